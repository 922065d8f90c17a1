/**
 * Merging and unmerging one layer, optionally on an offload backend. The math is in LoraLayer's pure
 * computeMerge/computeUnmerge; this file moves the inputs there and back and checks safe merges.
 */
import { type Backend, ops, type Tensor } from '@dorajs/core';
import { MergeError } from '../errors.js';
import type { LoraLayer, MergedAdapter, MergeSource } from '../layers/lora-layer.js';
import { runOffloaded } from './offload.js';

/** Flattens merge sources into a tensor list and back (runOffloaded moves lists of tensors). */
function pack(sources: readonly MergeSource[]): Tensor[] {
  return sources.flatMap((s) => (s.m ? [s.a, s.b, s.m] : [s.a, s.b]));
}

function unpack(sources: readonly MergeSource[], tensors: readonly Tensor[], start: number): { sources: MergeSource[]; next: number } {
  let i = start;
  const out = sources.map((s) => {
    const a = tensors[i++]!;
    const b = tensors[i++]!;
    const m = s.m ? tensors[i++]! : null;
    return { ...s, a, b, m };
  });
  return { sources: out, next: i };
}

export interface ComputedMerge {
  readonly layer: LoraLayer;
  readonly weight: Tensor;
  readonly merged: MergedAdapter[];
}

/**
 * The merged weight of `layer` with `names` added (after any adapters merged before), each DoRA norm from
 * the unmerged base: when adapters are already merged, the base is reconstructed by unmerging them on a
 * temporary copy. Nothing is installed.
 */
export async function computeLayerMerge(layer: LoraLayer, names: readonly string[], offload: Backend | null): Promise<ComputedMerge> {
  for (const n of names) layer.assertMergeable(n);
  const previous = layer.mergedSources();
  const prevSources = previous.map((p) => p.source);
  const prevNorms = previous.map((p) => p.norm);
  const sources = names.map((n) => layer.mergeSource(n));
  const inputs = [layer.weight, ...pack(prevSources), ...prevNorms.filter((n): n is Tensor => n !== null), ...pack(sources)];
  const outputs = await runOffloaded(offload, layer.weight.backend, inputs, (t) => {
    const w = t[0]!;
    const prev = unpack(prevSources, t, 1);
    let i = prev.next;
    const norms = prevNorms.map((n) => (n ? t[i++]! : null));
    const next = unpack(sources, t, i);
    const wBase = prev.sources.length
      ? layer.computeUnmerge(
          w,
          prev.sources.map((source, k) => ({ source, norm: norms[k]! })),
        )
      : w;
    const { w: merged, norms: newNorms } = layer.computeMerge(w, wBase, next.sources);
    return [merged, ...newNorms.filter((n): n is Tensor => n !== null)];
  });
  let k = 1;
  const merged = sources.map((s) => ({ name: s.name, norm: s.m ? outputs[k++]! : null }));
  return { layer, weight: outputs[0]!, merged };
}

/** The layer's unmerged weight (every merged adapter removed, last first). Nothing is installed. */
export async function computeLayerUnmerge(layer: LoraLayer, offload: Backend | null): Promise<Tensor> {
  const previous = layer.mergedSources();
  const sources = previous.map((p) => p.source);
  const norms = previous.map((p) => p.norm);
  const inputs = [layer.weight, ...pack(sources), ...norms.filter((n): n is Tensor => n !== null)];
  const [w] = await runOffloaded(offload, layer.weight.backend, inputs, (t) => {
    const unpacked = unpack(sources, t, 1);
    let i = unpacked.next;
    const moved = norms.map((n) => (n ? t[i++]! : null));
    return [
      layer.computeUnmerge(
        t[0]!,
        unpacked.sources.map((source, k) => ({ source, norm: moved[k]! })),
      ),
    ];
  });
  return w!;
}

/** Throws a MergeError naming the module when `w` holds NaN or Inf (PEFT's safe_merge check). */
export async function assertFinite(w: Tensor, layer: LoraLayer, names: readonly string[]): Promise<void> {
  const finite = ops.isFinite(w);
  const min = ops.min(finite);
  try {
    const [v] = await min.data();
    if (v !== 1) {
      throw new MergeError(
        `NaNs detected in the merged weights of module '${layer._path}'. The adapter ${names.map((n) => `'${n}'`).join(', ')} seems to be broken`,
        layer._path,
        names.join(','),
      );
    }
  } finally {
    finite.dispose();
    min.dispose();
  }
}

export function disposeComputed(c: ComputedMerge): void {
  c.weight.dispose();
  for (const m of c.merged) m.norm?.dispose();
}
