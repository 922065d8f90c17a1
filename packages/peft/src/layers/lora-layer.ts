/**
 * The LoRA wrapper around one base layer, as PEFT's `LoraLayer`: the base layer stays in `base_layer`
 * and each adapter lives in per-adapter containers (`lora_A.<name>`, `lora_magnitude_vector.<name>`, …),
 * so state-dict keys equal PEFT's in-memory keys. Each adapter's work — forward step, delta, merge — is
 * its variant's (plain LoRA or DoRA, `../variants`); this class decides which adapters apply, in which
 * order, and keeps the merge records.
 */
import {
  DoraError,
  Dropout,
  Layer,
  type LayerGeometry,
  loraScaling,
  ModuleDict,
  noGrad,
  ops,
  Parameter,
  type QuantizedLinear,
  QuantizedWeight,
  type Random,
  type Tensor,
  type Weight,
} from '@dorajs/core';
import { AdapterNameError, MergeError } from '../errors.js';
import type { AdapterSettings, AdapterTensors, MergeInput, MergeRecord, VariantHost } from '../variants/variant.js';
import type { DoraMagnitude } from './dora-magnitude.js';
import { DoraMagnitude as Magnitude } from './dora-magnitude.js';
import { batchAdapterNamesFor } from './batch-scope.js';
import { unmergeAll } from './merge-math.js';
import { perRowGroups } from './rows.js';

export type { AdapterSettings, AdapterTensors } from '../variants/variant.js';

/** One merged adapter and what its variant needs to undo the merge. */
export interface MergedAdapter {
  readonly name: string;
  readonly record: MergeRecord;
}

/** Shapes an adapter of rank r must have on this layer. */
export interface AdapterShapes {
  readonly a: readonly number[];
  readonly b: readonly number[];
  readonly m: readonly number[];
}

/** How merges see a layer: W and the adapter tensors in the space where W + Δ is exact (grouped convs densify). */
export interface MergeSpace {
  readonly geometry: LayerGeometry;
  weight(w: Tensor): Tensor;
  input(i: MergeInput): MergeInput;
}

/** Per-call forward options of a LoRA layer. */
export interface LoraForwardOptions {
  /** One adapter name per sample (`'__base__'` = none): mixed-batch inference. */
  readonly adapterNames?: readonly string[];
}

export abstract class LoraLayer<B extends Layer = Layer> extends Layer implements VariantHost {
  static override readonly typeName: string = 'LoraLayer';
  base_layer: B;
  lora_dropout = new ModuleDict<Dropout>();
  declare lora_magnitude_vector: ModuleDict<DoraMagnitude>;

  /** Dotted path of this layer inside the wrapped model (for error messages). */
  readonly _path: string;
  protected _settings = new Map<string, AdapterSettings>();
  protected _active: string[] = [];
  protected _disabled = false;
  protected _merged: MergedAdapter[] = [];

  constructor(base: B, path: string) {
    super();
    this.base_layer = base;
    this._path = path;
  }

  abstract readonly geometry: LayerGeometry;
  /** Shapes of A, B and the magnitude for rank r. */
  abstract adapterShapes(r: number): AdapterShapes;
  /** Base output without bias (x·Wᵀ, the lookup, the conv). */
  abstract baseOut(x: Tensor): Tensor;
  /** B(A(x)) without the scale. */
  abstract branch(name: string, x: Tensor): Tensor;
  /** y + bias, with the bias broadcast over this layer's feature axis. */
  abstract addBias(y: Tensor, bias: Tensor): Tensor;
  /** Stores A and B (already shaped) under `name`. */
  protected abstract setAdapterWeights(name: string, a: Tensor, b: Tensor): void;
  protected abstract deleteAdapterWeights(name: string): void;
  abstract adapterWeights(name: string): { a: Parameter; b: Parameter } | undefined;

  get path(): string {
    return this._path;
  }

  /** The base weight: a Parameter, or the packed weight of a quantized base (`quantizedBase`). */
  get baseWeight(): Parameter | QuantizedWeight {
    return (this.base_layer as unknown as { weight: Parameter | QuantizedWeight }).weight;
  }

  /** The base weight Parameter of a dense base; a quantized base has none (use `baseWeight`). */
  get weight(): Parameter {
    const w = this.baseWeight;
    if (w instanceof QuantizedWeight) {
      throw new DoraError(`module '${this._path}': the base weight is quantized (${w.format}) and has no Parameter; read baseWeight`);
    }
    return w;
  }

  /** The quantized base layer, or null for a dense base. */
  get quantizedBase(): QuantizedLinear | null {
    return null;
  }

  /**
   * The base weight as the DoRA norm and the DoRA linear read it: the stored weight itself (a packed
   * weight for a quantized base: core's narrow ops read it dequantized, never materialised).
   */
  denseWeight(): Weight {
    return this.baseWeight;
  }

  /**
   * The base weight merges compute on, float32: the Parameter itself, a bf16/f16 base widened exactly, or
   * a quantized base dequantized (both new tensors).
   */
  mergeWeight(): Tensor {
    const w = this.weight;
    return w.dtype === 'float32' ? w : noGrad(() => ops.cast(w, 'float32'));
  }

  /**
   * The weight a computed merge installs: the float32 result, rounded once to a bf16/f16 base's dtype,
   * or for a quantized base requantized in its format (PEFT's dequantize → add → requantize). Takes
   * ownership of `dense`.
   */
  async packMerged(dense: Tensor, _names: readonly string[]): Promise<Tensor | QuantizedWeight> {
    return this.narrowBack(dense);
  }

  /** `dense` in the dense base's own dtype (the same tensor when that is float32); takes ownership. */
  protected narrowBack(dense: Tensor): Tensor {
    const dtype = this.weight.dtype;
    if (dense.dtype === dtype) return dense;
    const narrow = noGrad(() => ops.cast(dense, dtype));
    dense.dispose();
    return narrow;
  }

  get bias(): Parameter | null {
    return (this.base_layer as unknown as { bias?: Parameter | null }).bias ?? null;
  }

  /** Adapter names on this layer, in insertion order. */
  get adapterNames(): string[] {
    return [...this._settings.keys()];
  }

  settings(name: string): AdapterSettings | undefined {
    return this._settings.get(name);
  }

  settingsOf(name: string): AdapterSettings {
    const s = this._settings.get(name);
    if (!s) throw new AdapterNameError(`module '${this._path}' has no adapter named '${name}'`);
    return s;
  }

  /** One adapter's parameters by name (A, B and its variant's, e.g. DoRA's magnitude). */
  tensorsOf(name: string): AdapterTensors {
    const w = this.adapterWeights(name);
    if (!w) throw new AdapterNameError(`module '${this._path}' has no adapter named '${name}'`);
    const m = this.lora_magnitude_vector.get(name)?.weight;
    return m ? { a: w.a, b: w.b, m } : { a: w.a, b: w.b };
  }

  dropout(name: string, x: Tensor): Tensor {
    return this.lora_dropout.get(name)!.forward(x);
  }

  get activeAdapters(): readonly string[] {
    return this._active;
  }

  get merged(): boolean {
    return this._merged.length > 0;
  }

  get mergedAdapters(): string[] {
    return this._merged.map((m) => m.name);
  }

  get disabled(): boolean {
    return this._disabled;
  }

  /**
   * Adds an adapter from given tensors (copied into new Parameters): A, B and every tensor its variant
   * keeps (compute fresh ones with the variant's `init`).
   */
  addAdapter(name: string, settings: AdapterSettings, t: AdapterTensors, random?: Random): void {
    if (this._settings.has(name)) throw new AdapterNameError(`module '${this._path}' already has an adapter named '${name}'`);
    for (const v of settings.variant.stateTensors) {
      if (!t[v.name])
        throw new DoraError(`module '${this._path}': ${settings.variant.name} adapter '${name}' was given no '${v.container}'`);
    }
    this._settings.set(name, settings);
    this.lora_dropout.set(name, new Dropout(settings.dropout, random));
    this.setAdapterWeights(name, t.a, t.b);
    if (t.m && settings.variant.stateTensors.some((v) => v.name === 'm')) {
      this.lora_magnitude_vector.set(name, new Magnitude(new Parameter(t.m)));
    }
    this.lora_dropout.get(name)!.training = this.training;
  }

  deleteAdapter(name: string): void {
    if (!this._settings.has(name)) return;
    if (this._merged.some((m) => m.name === name)) {
      throw new MergeError(
        `Cannot delete adapter(s) ['${name}'] of module '${this._path}' while they are merged. Please unmerge them first.`,
        this._path,
        name,
      );
    }
    const mag = this.lora_magnitude_vector.get(name);
    if (mag) {
      mag.clearCache();
      mag.normMemo.clear();
      mag.weight.dispose();
      this.lora_magnitude_vector.delete(name);
    }
    this.deleteAdapterWeights(name);
    this.lora_dropout.delete(name);
    this._settings.delete(name);
    this._active = this._active.filter((n) => n !== name);
  }

  /** Activates `names` (those present on this layer apply, in the given order). */
  setActive(names: readonly string[]): void {
    this._active = [...names];
    this.clearDoraCaches();
  }

  setDisabled(flag: boolean): void {
    this._disabled = flag;
  }

  /** PEFT's `set_scale`: scaling = k · alpha / r (or / √r). */
  setScale(name: string, k: number): void {
    const s = this._settings.get(name);
    if (!s) return;
    this._settings.set(name, { ...s, scaling: k * loraScaling(s.alpha, s.r, s.useRslora) });
    this.clearDoraCaches();
  }

  clearDoraCaches(): void {
    for (const [name, s] of this._settings) s.variant.clearCache(this, name);
  }

  /** One adapter as a merge input (on this layer's backend). */
  mergeInput(name: string): MergeInput {
    const s = this.settingsOf(name);
    return { name, variant: s.variant, scale: s.scaling, tensors: this.tensorsOf(name) };
  }

  // ---------------------------------------------------------------- forward

  forward(x: Tensor, options: LoraForwardOptions = {}): Tensor {
    if (this._disabled) {
      if (this.merged) this.unmergeSync();
      return this.base_layer.forward(x);
    }
    const batchNames = options.adapterNames ?? batchAdapterNamesFor(this);
    if (batchNames) return this.mixedBatchForward(x, batchNames);
    if (this.merged) return this.base_layer.forward(x);
    const active = this._active.filter((n) => this._settings.has(n));
    if (active.length === 0) return this.base_layer.forward(x);
    return this.applyAdapters(x, active);
  }

  /**
   * result = base(x) followed by each adapter's variant step in order. DoRA in the reuse form rescales
   * everything accumulated so far (PEFT's eval forward: y = b + g₂ ⊙ [g₁ ⊙ x(W + s₁ΔW₁)ᵀ + s₂·xΔW₂ᵀ]).
   */
  protected applyAdapters(x: Tensor, names: readonly string[]): Tensor {
    const bias = this.bias;
    // The first adapter computes the base output itself (so a variant can fuse it); see AdapterVariant.forward.
    let acc: Tensor | null = null;
    let biasAdded = false;
    names.forEach((name, i) => {
      const last = i === names.length - 1 ? bias : null;
      const step = this._settings.get(name)!.variant.forward(this, name, x, acc, last);
      acc = step.y;
      biasAdded ||= step.biasAdded;
    });
    const y = acc ?? this.baseOut(x);
    return bias && !biasAdded ? this.addBias(y, bias) : y;
  }

  /** Per-sample adapters (`adapterNames`): each row gets its own adapter, or none for `__base__`. */
  protected mixedBatchForward(x: Tensor, names: readonly string[]): Tensor {
    if (names.length !== x.shape[0]) {
      throw new AdapterNameError(
        `module '${this._path}': ${names.length} adapter names for a batch of ${x.shape[0]} (shape [${x.shape.join(', ')}])`,
      );
    }
    return perRowGroups(x, names, (name, rows) =>
      this._settings.has(name) ? this.applyAdapters(rows, [name]) : this.base_layer.forward(rows),
    );
  }

  // ---------------------------------------------------------------- merging

  /** The space merges run in; identity except where a layer's merge changes its kind (grouped convs). */
  mergeSpace(): MergeSpace {
    return { geometry: this.geometry, weight: (w) => w, input: (i) => i };
  }

  /** Throws a MergeError when this layer cannot be merged at all. */
  assertMergeable(_name: string): void {}

  /** Records a merge computed elsewhere (possibly on an offload backend) and installs the new weight. */
  commitMerge(newWeight: Tensor | QuantizedWeight, merged: readonly MergedAdapter[]): void {
    this.installWeight(newWeight);
    this._merged.push(...merged);
    this.clearDoraCaches();
  }

  /** Installs an unmerged weight and forgets the merge records. */
  commitUnmerge(newWeight: Tensor | QuantizedWeight): void {
    this.installWeight(newWeight);
    this.forgetMerges();
  }

  /** A dense weight is copied into the Parameter (the caller keeps its tensor); a packed one is taken over. */
  protected installWeight(w: Tensor | QuantizedWeight): void {
    if (w instanceof QuantizedWeight) {
      const q = this.quantizedBase;
      if (!q) throw new MergeError(`module '${this._path}': a packed weight cannot replace a dense base`, this._path, '');
      q.setWeight(w);
    } else this.weight.assign(w);
  }

  /** Drops the merge records, keeping the merged weight (mergeAndUnload, unload). */
  forgetMerges(): void {
    for (const m of this._merged) for (const t of Object.values(m.record)) t.dispose();
    this._merged = [];
    this.clearDoraCaches();
  }

  /** The merge records, oldest first. */
  get mergeRecords(): readonly MergedAdapter[] {
    return this._merged;
  }

  /** Unmerges on this layer's own backend (used by a forward with adapters disabled, as PEFT does). */
  unmergeSync(): void {
    if (!this.merged) return;
    if (this.quantizedBase) {
      throw new MergeError(
        `module '${this._path}': adapters merged into a quantized base are unmerged by requantizing; call 'await unmergeAdapter()' before a forward with adapters disabled`,
        this._path,
        this.mergedAdapters.join(','),
      );
    }
    const base = this.mergeWeight();
    const dense = unmergeAll(
      this._path,
      this.mergeSpace(),
      base,
      this._merged.map((m) => ({ input: this.mergeInput(m.name), record: m.record })),
    );
    if (base !== this.weight) base.dispose();
    const w = this.narrowBack(dense);
    this.commitUnmerge(w);
    w.dispose();
  }
}
