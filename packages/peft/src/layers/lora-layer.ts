/**
 * The LoRA/DoRA wrapper around one base layer, as PEFT's `LoraLayer`: the base layer stays in `base_layer`
 * and each adapter lives in per-adapter containers (`lora_A.<name>`, `lora_magnitude_vector.<name>`, …),
 * so state-dict keys equal PEFT's in-memory keys. The math comes from core's DoRA module; this class decides
 * which adapters apply, in which order, and with which form (base-result reuse, or PEFT's recompute form in
 * training with dropout), and keeps merge state and DoRA caches.
 */
import {
  composeAdapter,
  DoraError,
  composeAdapterDropout,
  deltaWeight,
  doraMerge,
  doraUnmerge,
  doraWeightNorm,
  Dropout,
  isGradEnabled,
  Layer,
  type LayerGeometry,
  loraScaling,
  magnitudeScale,
  ModuleDict,
  noGrad,
  ops,
  Parameter,
  type Random,
  type Tensor,
  tidy,
} from '@dorajs/core';
import { AdapterNameError, MergeError } from '../errors.js';
import { DoraCaching } from './dora-caching.js';
import { DoraMagnitude } from './dora-magnitude.js';
import { perRowGroups } from './rows.js';

export interface AdapterSettings {
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly useDora: boolean;
  readonly useRslora: boolean;
  readonly dropout: number;
}

/** The parameters of one adapter on one layer, in W's backend. */
export interface AdapterTensors {
  readonly a: Tensor;
  readonly b: Tensor;
  /** DoRA magnitude in PEFT's shape; null for plain LoRA. */
  readonly m: Tensor | null;
}

/** One merged adapter: what unmerge needs (the norm cannot be recomputed from a merged weight). */
export interface MergedAdapter {
  readonly name: string;
  /** ‖W_base + s·B·A‖ at merge time, [out], on W's backend; null for plain LoRA. */
  readonly norm: Tensor | null;
}

/** Shapes an adapter of rank r must have on this layer. */
export interface AdapterShapes {
  readonly a: readonly number[];
  readonly b: readonly number[];
  readonly m: readonly number[];
}

/** The merge inputs of one adapter (on whatever backend the merge runs). */
export interface MergeSource {
  readonly name: string;
  readonly a: Tensor;
  readonly b: Tensor;
  readonly m: Tensor | null;
  readonly scale: number;
}

export abstract class LoraLayer<B extends Layer = Layer> extends Layer {
  base_layer: B;
  lora_dropout = new ModuleDict<Dropout>();
  declare lora_magnitude_vector: ModuleDict<DoraMagnitude>;

  /** Dotted path of this layer inside the wrapped model (for error messages). */
  readonly _path: string;
  protected _settings = new Map<string, AdapterSettings>();
  protected _active: string[] = [];
  protected _disabled = false;
  protected _merged: MergedAdapter[] = [];
  /** Per-sample adapter names while a mixed-batch forward runs. */
  _batchAdapterNames: readonly string[] | null = null;

  constructor(base: B, path: string) {
    super();
    this.base_layer = base;
    this._path = path;
  }

  abstract readonly geometry: LayerGeometry;
  /** Shapes of A, B and the magnitude for rank r. */
  abstract adapterShapes(r: number): AdapterShapes;
  /** Base output without bias (x·Wᵀ, the lookup, the conv). */
  protected abstract baseOut(x: Tensor): Tensor;
  /** B(A(x)) without the scale. */
  protected abstract branch(name: string, x: Tensor): Tensor;
  /** y + bias, with the bias broadcast over this layer's feature axis. */
  protected abstract addBias(y: Tensor, bias: Tensor): Tensor;
  /** Stores A and B (already shaped) under `name`. */
  protected abstract setAdapterWeights(name: string, a: Tensor, b: Tensor): void;
  protected abstract deleteAdapterWeights(name: string): void;
  abstract adapterWeights(name: string): { a: Parameter; b: Parameter } | undefined;

  get weight(): Parameter {
    return (this.base_layer as unknown as { weight: Parameter }).weight;
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
   * Adds an adapter from given tensors (copied into new Parameters). `m` is required exactly when
   * `settings.useDora`; compute it with `initialMagnitude` for a fresh adapter.
   */
  addAdapter(name: string, settings: AdapterSettings, t: AdapterTensors, random?: Random): void {
    if (this._settings.has(name)) throw new AdapterNameError(`module '${this._path}' already has an adapter named '${name}'`);
    if (settings.useDora && !t.m) throw new DoraError(`module '${this._path}': DoRA adapter '${name}' was given no magnitude`);
    this._settings.set(name, settings);
    this.lora_dropout.set(name, new Dropout(settings.dropout, random));
    this.setAdapterWeights(name, t.a, t.b);
    if (settings.useDora) this.lora_magnitude_vector.set(name, new DoraMagnitude(new Parameter(t.m!)));
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
    for (const name of this.lora_magnitude_vector.keys()) this.lora_magnitude_vector.get(name)!.clearCache();
  }

  /** The parameters of one adapter as merge inputs (on this layer's backend). */
  mergeSource(name: string): MergeSource {
    const w = this.adapterWeights(name)!;
    return { name, a: w.a, b: w.b, m: this.lora_magnitude_vector.get(name)?.weight ?? null, scale: this._settings.get(name)!.scaling };
  }

  // ---------------------------------------------------------------- forward

  forward(x: Tensor): Tensor {
    if (this._disabled) {
      if (this.merged) this.unmergeSync();
      return this.base_layer.forward(x);
    }
    if (this._batchAdapterNames) return this.mixedBatchForward(x, this._batchAdapterNames);
    if (this.merged) return this.base_layer.forward(x);
    const active = this._active.filter((n) => this._settings.has(n));
    if (active.length === 0) return this.base_layer.forward(x);
    return this.applyAdapters(x, active);
  }

  /**
   * result = base(x) followed by each adapter in order. DoRA in the reuse form rescales everything
   * accumulated so far (PEFT's eval forward: y = b + g₂ ⊙ [g₁ ⊙ x(W + s₁ΔW₁)ᵀ + s₂·xΔW₂ᵀ]); in training
   * with dropout the correction term uses the dropped input (PEFT's recompute form).
   */
  protected applyAdapters(x: Tensor, names: readonly string[]): Tensor {
    const bias = this.bias;
    let acc = this.baseOut(x);
    let biasAdded = false;
    names.forEach((name, i) => {
      const s = this._settings.get(name)!;
      const recompute = this.training && s.dropout > 0 && this.geometry.kind !== 'embedding';
      if (recompute) {
        const xd = this.lora_dropout.get(name)!.forward(x);
        const lora = this.branch(name, xd);
        acc = s.useDora
          ? composeAdapterDropout(this.geometry, acc, this.baseOut(xd), lora, s.scaling, this.doraScale(name))
          : ops.add(acc, ops.mulScalar(lora, s.scaling));
        return;
      }
      const last = i === names.length - 1 && bias !== null;
      acc = composeAdapter(
        this.geometry,
        acc,
        this.branch(name, x),
        s.scaling,
        s.useDora ? this.doraScale(name) : null,
        last ? bias : null,
      );
      biasAdded ||= last;
    });
    return bias && !biasAdded ? this.addBias(acc, bias) : acc;
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

  /** g = m / ‖W + s·B·A‖ [out] for a DoRA adapter, from the cache when DoRA caching applies. */
  protected doraScale(name: string): Tensor {
    const mag = this.lora_magnitude_vector.get(name)!;
    const m = mag.weight;
    const { a, b } = this.adapterWeights(name)!;
    const s = this._settings.get(name)!.scaling;
    if (!DoraCaching.enabled || this.training) {
      // PEFT empties a layer's cache whenever it computes the norm with caching off.
      mag.clearCache();
      return magnitudeScale(m, doraWeightNorm(this.geometry, this.weight, a, b, s));
    }
    const sources = [this.weight, a, b, m];
    let hit = mag.cached(sources, s);
    if (!hit) {
      const norm = doraWeightNorm(this.geometry, this.weight, a, b, s);
      const g = noGrad(() => magnitudeScale(m, norm));
      mag.store(sources, s, norm, g);
      hit = { norm, g };
    }
    // The cached g carries no gradient; recompute m / norm (out floats) when m must receive one.
    if (isGradEnabled() && m.requiresGrad) return magnitudeScale(m, hit.norm);
    return ops.reshape(hit.g, hit.g.shape);
  }

  // ---------------------------------------------------------------- merging

  /**
   * W ← f_k ⊙ (W + Δ_k) for each source in order (plain LoRA: W + Δ_k), each DoRA norm taken from the
   * unmerged base `wBase` so that merged = unmerged forward (PEFT ≤ 0.20 took it from the running weight,
   * issue #3608). Pure: returns the new weight and the norms; runs on whatever backend the inputs live on.
   */
  computeMerge(
    wCurrent: Tensor,
    wBase: Tensor,
    sources: readonly MergeSource[],
    geometry: LayerGeometry = this.geometry,
  ): { w: Tensor; norms: (Tensor | null)[] } {
    return tidy(() =>
      noGrad(() => {
        let w = wCurrent;
        const norms: (Tensor | null)[] = [];
        for (const src of sources) {
          const delta = this.delta(wBase, src, geometry);
          if (src.m) {
            const norm = doraWeightNorm(geometry, wBase, src.a, src.b, src.scale);
            w = doraMerge(geometry, w, delta, src.m, norm);
            norms.push(norm);
          } else {
            w = ops.add(w, delta);
            norms.push(null);
          }
        }
        return { w, norms };
      }),
    );
  }

  /** Inverse of computeMerge for already-merged adapters (last merged first). */
  computeUnmerge(
    wMerged: Tensor,
    merged: readonly { source: MergeSource; norm: Tensor | null }[],
    geometry: LayerGeometry = this.geometry,
  ): Tensor {
    return tidy(() =>
      noGrad(() => {
        let w = wMerged;
        for (let i = merged.length - 1; i >= 0; i--) {
          const { source, norm } = merged[i]!;
          const delta = this.delta(w, source, geometry);
          w = source.m && norm ? doraUnmerge(geometry, w, delta, source.m, norm) : ops.sub(w, delta);
        }
        return w;
      }),
    );
  }

  private delta(w: Tensor, src: MergeSource, geometry: LayerGeometry): Tensor {
    try {
      return deltaWeight(geometry, w, src.a, src.b, src.scale);
    } catch (e) {
      throw new MergeError(`module '${this._path}', adapter '${src.name}': ${(e as Error).message}`, this._path, src.name);
    }
  }

  /** Throws a MergeError when this layer cannot be merged at all (grouped convs override this). */
  assertMergeable(_name: string): void {}

  /** Records a merge computed elsewhere (possibly on an offload backend) and installs the new weight. */
  commitMerge(newWeight: Tensor, merged: readonly MergedAdapter[]): void {
    this.weight.assign(newWeight);
    this._merged.push(...merged);
    this.clearDoraCaches();
  }

  /** Installs an unmerged weight and forgets the merge records. */
  commitUnmerge(newWeight: Tensor): void {
    this.weight.assign(newWeight);
    for (const m of this._merged) m.norm?.dispose();
    this._merged = [];
    this.clearDoraCaches();
  }

  /** Drops the merge records, keeping the merged weight (mergeAndUnload, unload). */
  forgetMerges(): void {
    for (const m of this._merged) m.norm?.dispose();
    this._merged = [];
    this.clearDoraCaches();
  }

  /** Merge records with their current sources (for unmerge and for reconstructing the unmerged base). */
  mergedSources(): { source: MergeSource; norm: Tensor | null }[] {
    return this._merged.map((m) => ({ source: this.mergeSource(m.name), norm: m.norm }));
  }

  /** Unmerges on this layer's own backend (used by a forward with adapters disabled, as PEFT does). */
  unmergeSync(): void {
    if (!this.merged) return;
    const w = this.computeUnmerge(this.weight, this.mergedSources());
    this.commitUnmerge(w);
    w.dispose();
  }
}
