/**
 * Adapter variants, as PEFT's `LoraVariant`: plain LoRA and DoRA are two implementations of one interface,
 * and a LoRA layer hands each adapter's work to that adapter's variant instead of branching on a flag.
 * A variant is stateless; the per-adapter tensors live on the layer under PEFT's state-dict names, and the
 * per-layer-kind math (Linear/Conv1D, Embedding, Conv1d/2d/3d) is core's, selected by the layer's geometry.
 *
 *   LoraLayer.forward ──▶ variant.forward(host, name, x, acc) ──▶ core: loraBranch, composeAdapter, …
 *   tuner/merge (plan → compute → commit) ──▶ variant.merge / variant.unmerge ──▶ core: doraMerge, …
 *   tuner/inject, io/load-adapter, io/save-adapter ──▶ variant.init / variant.stateTensors
 */
import type { LayerGeometry, ModuleDict, Parameter, QuantizedWeight, Tensor, Weight } from '@dorajs/core';
import type { DoraMagnitude } from '../layers/dora-magnitude.js';

/** Names of the tensors one adapter has on one layer: A, B and the variants' own (DoRA's magnitude `m`). */
export type AdapterTensorName = 'a' | 'b' | 'm';

/** One adapter's tensors on one layer, by name (`m` only for DoRA). */
export type AdapterTensors = {
  readonly a: Tensor;
  readonly b: Tensor;
  readonly m?: Tensor;
};

/** What a merge must keep to be undone, by name (DoRA: the norm at merge time — a merged W cannot give it back). */
export type MergeRecord = Readonly<Record<string, Tensor>>;

/** Settings of one adapter on one layer (rank, scale, dropout, and the variant that runs it). */
export interface AdapterSettings {
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly useRslora: boolean;
  readonly dropout: number;
  readonly variant: AdapterVariant;
}

/** A tensor a variant adds to an adapter, and where PEFT's files keep it. */
export interface VariantTensor {
  readonly name: Exclude<AdapterTensorName, 'a' | 'b'>;
  /** The state-dict container on the layer (`lora_magnitude_vector`): file key `<module>.<container>`. */
  readonly container: string;
}

/** What a variant's forward may use of the layer it runs on. */
export interface VariantHost {
  readonly path: string;
  readonly geometry: LayerGeometry;
  readonly training: boolean;
  /** The base weight (what caches compare versions of): a Parameter, or a quantized base's packed weight. */
  readonly baseWeight: Parameter | QuantizedWeight;
  /**
   * The base weight in its stored layout as the DoRA norm and DoRA linear read it: dense, or a quantized
   * base's packed weight, which core's narrow ops read as dequantized (PEFT's QDoRA norm).
   */
  denseWeight(): Weight;
  settingsOf(name: string): AdapterSettings;
  adapterWeights(name: string): { a: Parameter; b: Parameter } | undefined;
  /** The base output without bias (x·Wᵀ, the lookup, the conv). */
  baseOut(x: Tensor): Tensor;
  /** B(A(x)) without the scale. */
  branch(name: string, x: Tensor): Tensor;
  /** The adapter's dropout applied to x (identity in eval). */
  dropout(name: string, x: Tensor): Tensor;
  /** y + bias, the bias broadcast over the feature axis. */
  addBias(y: Tensor, bias: Tensor): Tensor;
  /** DoRA's per-adapter magnitude modules (PEFT's `lora_magnitude_vector`), which also hold DoRA caches. */
  readonly lora_magnitude_vector: ModuleDict<DoraMagnitude>;
}

/** One adapter's inputs to a merge: its tensors and scale (on whatever backend the merge runs). */
export interface MergeInput {
  readonly name: string;
  readonly variant: AdapterVariant;
  readonly scale: number;
  readonly tensors: AdapterTensors;
}

export interface AdapterVariant {
  readonly name: 'lora' | 'dora';
  /** The tensors this variant adds to an adapter: saved, loaded and trained with A and B. */
  readonly stateTensors: readonly VariantTensor[];
  /** The variant's tensors for a fresh adapter (DoRA: m = ‖W + s·B·A‖ in PEFT's shape), on W's backend. */
  init(geometry: LayerGeometry, w: Weight, a: Tensor, b: Tensor, scale: number): Partial<AdapterTensors>;
  /**
   * One adapter's step of a layer's forward: `acc` is the output so far without bias (the base output plus
   * earlier adapters), or null for the first adapter, which computes the base output itself (so that it
   * may ask for a fused kernel); `bias`, when given, must be added by this step. Returns the new output and
   * whether the bias is in it.
   */
  forward(host: VariantHost, name: string, x: Tensor, acc: Tensor | null, bias: Tensor | null): { y: Tensor; biasAdded: boolean };
  /** s·ΔW in W's stored layout. */
  deltaWeight(geometry: LayerGeometry, w: Tensor, input: MergeInput): Tensor;
  /** W ← merge of one adapter into `w`, DoRA norms from the unmerged `wBase`; returns the weight and its record. */
  merge(geometry: LayerGeometry, w: Tensor, wBase: Tensor, input: MergeInput): { weight: Tensor; record: MergeRecord };
  /** The inverse of merge given its record. */
  unmerge(geometry: LayerGeometry, w: Tensor, input: MergeInput, record: MergeRecord): Tensor;
  /** Forgets per-adapter caches (DoRA caching) after a change the cache cannot see. */
  clearCache(host: VariantHost, name: string): void;
}
