/**
 * Merging and unmerging, one straight line per layer: plan (which adapters, validated, nothing computed)
 * → compute (the variants' math on named tensors, optionally on an offload backend) → commit (install the
 * weight and the merge records). Nothing is installed before every check has passed.
 */
import { type Backend, ops, QuantizedWeight, Tensor } from '@dorajs/core';
import { MergeError } from '../errors.js';
import type { LoraLayer, MergedAdapter } from '../layers/lora-layer.js';
import { mergeAll, unmergeAll } from '../layers/merge-math.js';
import type { AdapterTensors, MergeInput, MergeRecord } from '../variants/variant.js';
import { runOffloaded } from './offload.js';

/** What one layer's merge will do: the adapters already merged (with their records) and those to add. */
export interface LayerMergePlan {
  readonly layer: LoraLayer;
  readonly merged: readonly { readonly input: MergeInput; readonly record: MergeRecord }[];
  readonly adding: readonly MergeInput[];
}

export interface ComputedMerge {
  readonly layer: LoraLayer;
  /** Dense, or requantized for a quantized base (which the layer takes over on commit). */
  readonly weight: Tensor | QuantizedWeight;
  readonly merged: MergedAdapter[];
}

/** Plans merging `names` into `layer` (after any adapters merged before); throws if it cannot be merged. */
export function planLayerMerge(layer: LoraLayer, names: readonly string[]): LayerMergePlan {
  for (const n of names) layer.assertMergeable(n);
  return {
    layer,
    merged: layer.mergeRecords.map((m) => ({ input: layer.mergeInput(m.name), record: m.record })),
    adding: names.map((n) => layer.mergeInput(n)),
  };
}

/** The named tensors a plan reads, and the plan's inputs rebuilt around moved copies of them. */
function namedInputs(plan: LayerMergePlan) {
  return {
    weight: plan.layer.mergeWeight(),
    merged: plan.merged.map((m) => ({ tensors: m.input.tensors, record: m.record })),
    adding: plan.adding.map((i) => i.tensors),
  };
}

type NamedInputs = ReturnType<typeof namedInputs>;

const withTensors = (input: MergeInput, tensors: AdapterTensors): MergeInput => ({ ...input, tensors });

/** Runs a plan's math; nothing is installed. */
export async function computeLayerMerge(plan: LayerMergePlan, offload: Backend | null): Promise<ComputedMerge> {
  const { layer } = plan;
  const inputs = namedInputs(plan);
  const out = await runOffloaded(offload, layer.baseWeight.backend, inputs, (t: NamedInputs) => {
    const merged = plan.merged.map((m, i) => ({ input: withTensors(m.input, t.merged[i]!.tensors), record: t.merged[i]!.record }));
    const adding = plan.adding.map((a, i) => withTensors(a, t.adding[i]!));
    return mergeAll(layer._path, layer.mergeSpace(), t.weight, merged, adding);
  }).finally(() => releaseMergeWeight(layer, inputs.weight));
  const names = plan.adding.map((a) => a.name);
  let weight: Tensor | QuantizedWeight;
  try {
    weight = await layer.packMerged(out.weight, names);
  } catch (e) {
    for (const r of out.records) for (const t of Object.values(r)) t.dispose();
    throw e;
  }
  return { layer, weight, merged: plan.adding.map((a, i) => ({ name: a.name, record: out.records[i]! })) };
}

/** The layer's unmerged weight (every merged adapter removed, last first). Nothing is installed. */
export async function computeLayerUnmerge(layer: LoraLayer, offload: Backend | null): Promise<Tensor | QuantizedWeight> {
  const plan = planLayerMerge(layer, []);
  const inputs = namedInputs(plan);
  const out = await runOffloaded(offload, layer.baseWeight.backend, inputs, (t: NamedInputs) => ({
    weight: unmergeAll(
      layer._path,
      layer.mergeSpace(),
      t.weight,
      plan.merged.map((m, i) => ({ input: withTensors(m.input, t.merged[i]!.tensors), record: t.merged[i]!.record })),
    ),
  })).finally(() => releaseMergeWeight(layer, inputs.weight));
  return layer.packMerged(out.weight, layer.mergedAdapters);
}

/** A quantized base's dequantized copy is a temporary; a dense base's Parameter is not. */
function releaseMergeWeight(layer: LoraLayer, w: Tensor): void {
  if (w !== layer.baseWeight) w.dispose();
}

/** After a commit: a dense weight was copied into the Parameter and is released; a packed one now belongs to the layer. */
export function releaseCommitted(w: Tensor | QuantizedWeight): void {
  if (w instanceof Tensor) w.dispose();
}

export function commitLayerMerge(c: ComputedMerge): void {
  c.layer.commitMerge(c.weight, c.merged);
  releaseCommitted(c.weight);
}

/** Throws a MergeError naming the module when `w` holds NaN or Inf (PEFT's safe_merge check). */
export async function assertFinite(w: Tensor | QuantizedWeight, layer: LoraLayer, names: readonly string[]): Promise<void> {
  // A requantized weight was checked on the host before it was packed (LoraLinear.packMerged).
  if (w instanceof QuantizedWeight) return;
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
  for (const m of c.merged) for (const t of Object.values(m.record)) t.dispose();
}
