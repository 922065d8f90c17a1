/**
 * One detached DoRA weight norm ‖W + s·B·A‖ kept from one forward to the next: a layer's training forwards
 * reuse it while W, A, B and the scale are the same objects at the same `version` (the micro-batches of one
 * gradient-accumulation step, a checkpoint's recompute). An optimizer step, merge/unmerge, `assign`, a
 * dtype or device move bumps a version (or replaces the object), so the next forward recomputes. The norm
 * carries no gradient, so a reused norm gives bit-identical results and gradients. Holds one [out] vector.
 */
import { Tensor } from '../tensor/tensor.js';

const versionOf = (d: unknown): number | undefined =>
  d !== null && typeof d === 'object' && typeof (d as { version?: unknown }).version === 'number'
    ? (d as { version: number }).version
    : undefined;

const disposed = (d: unknown): boolean => d !== null && typeof d === 'object' && (d as { isDisposed?: unknown }).isDisposed === true;

export class NormMemo {
  private deps: readonly unknown[] | null = null;
  private versions: readonly (number | undefined)[] = [];
  private value: Tensor | null = null;

  /** The kept norm for exactly these deps (same objects, same versions) as a new handle, else null. */
  get(deps: readonly unknown[]): Tensor | null {
    const v = this.value;
    const own = this.deps;
    if (!v || !own || own.length !== deps.length) return null;
    for (let i = 0; i < deps.length; i++) {
      const d = deps[i];
      if (d !== own[i] || versionOf(d) !== this.versions[i] || disposed(d)) return null;
    }
    return new Tensor(v.storage.retain(), v.shape);
  }

  /** Keeps `norm` for `deps`, releasing what was kept before. The caller keeps ownership of `norm`. */
  set(deps: readonly unknown[], norm: Tensor): void {
    this.clear();
    this.deps = [...deps];
    this.versions = deps.map(versionOf);
    this.value = new Tensor(norm.storage.retain(), norm.shape, false);
  }

  /** Releases the kept norm. */
  clear(): void {
    this.value?.dispose();
    this.value = null;
    this.deps = null;
    this.versions = [];
  }

  /** Elements held: out when filled, 0 when empty. */
  get size(): number {
    return this.value?.size ?? 0;
  }
}
