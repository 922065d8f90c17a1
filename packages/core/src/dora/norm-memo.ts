/**
 * One detached DoRA weight norm ‖W + s·B·A‖ kept from one forward to the next: a layer's training forwards
 * reuse it while W, A, B and the scale are the same objects at the same `version` (the micro-batches of one
 * gradient-accumulation step, a checkpoint's recompute). An optimizer step, merge/unmerge, `assign`, a
 * dtype or device move bumps a version (or replaces the object), so the next forward recomputes. The norm
 * carries no gradient, so a reused norm gives bit-identical results and gradients. Holds one [out] vector.
 */
import { type DepsKey, depsKey, sameDeps } from '../tensor/deps-key.js';
import { Tensor } from '../tensor/tensor.js';

export class NormMemo {
  private key: DepsKey | null = null;
  private value: Tensor | null = null;

  /** The kept norm for exactly these deps (same objects, same versions) as a new handle, else null. */
  get(deps: readonly unknown[]): Tensor | null {
    const v = this.value;
    return v && this.key && sameDeps(this.key, deps) ? new Tensor(v.storage.retain(), v.shape) : null;
  }

  /** Keeps `norm` for `deps`, releasing what was kept before. The caller keeps ownership of `norm`. */
  set(deps: readonly unknown[], norm: Tensor): void {
    this.clear();
    this.key = depsKey(deps);
    this.value = new Tensor(norm.storage.retain(), norm.shape, false);
  }

  /** Releases the kept norm. */
  clear(): void {
    this.value?.dispose();
    this.value = null;
    this.key = null;
  }

  /** Elements held: out when filled, 0 when empty. */
  get size(): number {
    return this.value?.size ?? 0;
  }
}
