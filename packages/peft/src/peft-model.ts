/**
 * PeftModel: a model with LoRA/DoRA adapters, PEFT's API in camelCase. The wrapped model is reachable as
 * `base_model.model` (so state-dict keys are PEFT's: `base_model.model.lin1.lora_A.default.weight`);
 * adapters are added, loaded, switched, disabled, merged and saved here.
 */
import {
  type Backend,
  type BackendSpec,
  dequantizeLinear,
  Layer,
  type Linear,
  type Module,
  noGrad,
  ops,
  QuantizedLinear,
  type Random,
  type SourceOptions,
  type Tensor,
} from '@dorajs/core';
import type { LoraConfig } from './config/lora-config.js';
import { preparePatterns } from './config/patterns.js';
import { AdapterNameError, LoraConfigError, MergeError } from './errors.js';
import type { AdapterSource } from './io/adapter-source.js';
import { loadAdapterInto } from './io/load-adapter.js';
import { savePretrained, type SavePretrainedOptions, type SaveTarget } from './io/save-adapter.js';
import { isLoraLayer } from './layers/kinds.js';
import type { LoraLayer } from './layers/lora-layer.js';
import { ModulesToSaveWrapper } from './layers/modules-to-save.js';
import { attachInternals } from './internal.js';
import { withBatchAdapterNames } from './layers/batch-scope.js';
import { applyInjection, computeAdapterTensors, planInjection } from './tuner/inject.js';
import {
  assertFinite,
  type ComputedMerge,
  commitLayerMerge,
  computeLayerMerge,
  computeLayerUnmerge,
  disposeComputed,
  releaseCommitted,
  planLayerMerge,
} from './tuner/merge.js';
import { OffloadResolver } from './tuner/offload.js';
import { addWeightedAdapter, type WeightedCombination } from './tuner/weighted.js';
import { warn } from './warnings.js';

/** PEFT's LoraModel: holds the wrapped model in `model`. */
export class LoraModel<M extends Module = Module> extends Layer {
  static override readonly typeName: string = 'LoraModel';
  constructor(public model: M) {
    super();
  }

  forward(x: Tensor): Tensor {
    if (!(this.model instanceof Layer))
      throw new LoraConfigError(
        `the wrapped model (${this.model.typeName}) has no forward(x); call its own methods inside peftModel.withAdapterNames(...)`,
      );
    return this.model.forward(x);
  }
}

export interface PeftModelOptions {
  /** Random source for adapter initialisation and LoRA dropout (default: core's process-wide one). */
  readonly random?: Random;
}

export interface FromPretrainedOptions extends PeftModelOptions, SourceOptions {
  readonly adapterName?: string;
  /** Keep the adapter trainable (default false: frozen, model in eval mode — as PEFT). */
  readonly isTrainable?: boolean;
  /** Run DoRA norms and merges on this backend (`true` = WebGPU) while the model stays where it is. */
  readonly ephemeralGpuOffload?: boolean | Backend;
  /** Move the model to this backend (after the adapter has been validated) before installing the adapter. */
  readonly backend?: BackendSpec;
}

export interface LoadAdapterOptions extends SourceOptions {
  readonly isTrainable?: boolean;
  readonly ephemeralGpuOffload?: boolean | Backend;
}

export interface MergeOptions {
  /** Check the merged weights for NaN/Inf before installing any of them (PEFT's safe_merge). */
  readonly safeMerge?: boolean;
  /** Adapters to merge, in order (default: the active ones). */
  readonly adapterNames?: readonly string[];
  /**
   * mergeAndUnload only: return a dense model. Every quantized Linear (adapted or not) becomes a plain
   * Linear whose weight is computed in float32 from the dequantized base (no requantization) and stored
   * in this dtype (bfloat16: rounded once, frozen). Without it a quantized base stays quantized, the
   * merged weight requantized (PEFT's behaviour).
   */
  readonly dtype?: 'float32' | 'bfloat16';
}

export interface ForwardOptions {
  /** One adapter name per sample (`'__base__'` = no adapter): mixed-batch inference. */
  readonly adapterNames?: readonly string[];
}

export const BASE_ADAPTER_NAME = '__base__';

export class PeftModel<M extends Module = Module> extends Layer {
  static override readonly typeName: string = 'PeftModel';
  base_model: LoraModel<M>;
  /** Each adapter's config by name (PEFT's `peft_config`). */
  readonly peftConfig = new Map<string, LoraConfig>();
  private _active: string[] = [];
  private readonly _random: Random | undefined;
  private readonly _offload = new OffloadResolver();

  /** @internal use getPeftModel or PeftModel.fromPretrained. */
  constructor(model: M, options: PeftModelOptions = {}) {
    super();
    this.base_model = new LoraModel(model);
    this._random = options.random;
    attachInternals(this, {
      registerAdapter: (name, config) => this.registerAdapter(name, config),
      assertNewName: (name) => this.assertNewName(name),
      offloadFor: (config) => this._offload.forConfig(config),
      random: options.random,
    });
    this.training = model.training;
    this.base_model.training = model.training;
  }

  /** Wraps `model` and adds its first adapter (what `getPeftModel` does). */
  static async create<M extends Module>(
    model: M,
    config: LoraConfig,
    adapterName = 'default',
    options: PeftModelOptions = {},
  ): Promise<PeftModel<M>> {
    const peft = new PeftModel(model, options);
    await peft.addAdapter(adapterName, config);
    peft.setAdapter(adapterName);
    return peft;
  }

  /**
   * Loads a PEFT adapter directory (or its files in memory) onto `model`. Everything is validated — config,
   * targets, keys, shapes — before the model is touched; on any error the model is left as it was.
   */
  static async fromPretrained<M extends Module>(
    model: M,
    source: AdapterSource,
    options: FromPretrainedOptions = {},
  ): Promise<PeftModel<M>> {
    const peft = new PeftModel(model, options);
    const name = options.adapterName ?? 'default';
    await loadAdapterInto(peft, source, name, {
      isTrainable: options.isTrainable ?? false,
      ephemeralGpuOffload: options.ephemeralGpuOffload,
      backend: options.backend,
      sourceOptions: options,
    });
    peft.setAdapter(name);
    if (!(options.isTrainable ?? false)) peft.eval();
    return peft;
  }

  /** The wrapped model, with its LoRA layers in place (PEFT's `get_base_model`). */
  getBaseModel(): M {
    return this.base_model.model;
  }

  get activeAdapter(): string {
    return this._active[0] ?? '';
  }

  get activeAdapters(): readonly string[] {
    return this._active;
  }

  /** Every LoRA layer with its path in the wrapped model. */
  loraLayers(): LoraLayer[] {
    return this.base_model.model
      .namedModules()
      .map(([, m]) => m)
      .filter(isLoraLayer);
  }

  modulesToSaveWrappers(): ModulesToSaveWrapper[] {
    return this.base_model.model
      .namedModules()
      .map(([, m]) => m)
      .filter((m): m is ModulesToSaveWrapper => m instanceof ModulesToSaveWrapper);
  }

  // ------------------------------------------------------------ adapters

  /** Adds a new adapter from `config` (not activated — call setAdapter, as in PEFT). */
  async addAdapter(name: string, config: LoraConfig): Promise<void> {
    this.assertNewName(name);
    const unsupported = config.unsupportedFeatures();
    if (unsupported.length) throw new LoraConfigError(`adapter '${name}': dorajs does not implement ${unsupported.join(', ')}`);
    if (config.bias !== 'none' && [...this.peftConfig.values()].some((c) => c.bias !== 'none')) {
      throw new LoraConfigError(
        `LoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for all adapters (adapter '${name}').`,
      );
    }
    await preparePatterns(config);
    const model = this.base_model.model;
    const plan = planInjection(model, config, name);
    const offload = await this._offload.forConfig(config);
    const tensors = await computeAdapterTensors(plan, () => null, { random: this._random, offload });
    applyInjection(model, plan, tensors, this._random);
    this.registerAdapter(name, plan.config);
  }

  /** Loads another adapter from disk or memory under `name` (not activated). */
  async loadAdapter(source: AdapterSource, name: string, options: LoadAdapterOptions = {}): Promise<void> {
    await loadAdapterInto(this, source, name, {
      isTrainable: options.isTrainable ?? false,
      ephemeralGpuOffload: options.ephemeralGpuOffload,
      sourceOptions: options,
    });
    if (!(options.isTrainable ?? false)) this.eval();
  }

  private registerAdapter(name: string, config: LoraConfig): void {
    this.peftConfig.set(name, config);
    this.setAdapter(this._active.length ? this._active : [name]);
  }

  private assertNewName(name: string): void {
    if (!name || name === BASE_ADAPTER_NAME) throw new AdapterNameError(`'${name}' cannot be an adapter name`);
    // Adapters are properties of ModuleDicts; names starting with '_' are private there, and dots would split state-dict keys.
    if (name.startsWith('_') || name.includes('.'))
      throw new AdapterNameError(`'${name}' cannot be an adapter name: it may not start with '_' or contain '.'`);
    if (this.peftConfig.has(name)) throw new AdapterNameError(`an adapter named '${name}' already exists`);
  }

  private assertKnown(names: readonly string[]): void {
    const unknown = names.filter((n) => !this.peftConfig.has(n));
    if (unknown.length)
      throw new AdapterNameError(
        `Adapter(s) ${unknown.map((n) => `'${n}'`).join(', ')} not found, available: ${[...this.peftConfig.keys()].map((n) => `'${n}'`).join(', ')}`,
      );
  }

  /**
   * Activates one adapter, or several that then apply in the given order. Only active adapters (and their
   * modules_to_save copies) are trainable, unless their config is in inference mode.
   */
  setAdapter(names: string | readonly string[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    this.assertKnown(list);
    this._active = list;
    for (const layer of this.loraLayers()) layer.setActive(list);
    for (const w of this.modulesToSaveWrappers()) w.setActive(list);
    this.updateTrainable();
  }

  /** PEFT's `_mark_only_adapters_as_trainable` + `set_adapter`'s requires_grad handling. */
  private updateTrainable(): void {
    const model = this.base_model.model;
    for (const p of model.parameters()) p.requiresGrad = false;
    const trainable = (name: string) => this._active.includes(name) && !this.peftConfig.get(name)!.inferenceMode;
    for (const layer of this.loraLayers()) {
      for (const name of layer.adapterNames) {
        const on = trainable(name);
        const w = layer.adapterWeights(name)!;
        w.a.requiresGrad = on;
        w.b.requiresGrad = on;
        const m = layer.lora_magnitude_vector.get(name);
        if (m) m.weight.requiresGrad = on;
      }
    }
    for (const wrapper of this.modulesToSaveWrappers()) {
      for (const name of wrapper.adapterNames) wrapper.modules_to_save.get(name)!.requiresGrad(trainable(name));
    }
    for (const name of this._active) {
      const c = this.peftConfig.get(name)!;
      if (c.inferenceMode || c.bias === 'none') continue;
      if (c.bias === 'all') {
        for (const [key, p] of model.namedParameters())
          if (key.split('.').pop() === 'bias' && !key.includes('.modules_to_save.') && !key.includes('.original_module.'))
            p.requiresGrad = true;
      } else {
        for (const layer of this.loraLayers()) if (layer.settings(name) && layer.bias) layer.bias.requiresGrad = true;
      }
    }
  }

  /** Runs `fn` with every adapter disabled (the base model's behaviour); async functions keep it until they settle. */
  disableAdapter<T>(fn: () => T): T {
    const layers = this.loraLayers();
    const wrappers = this.modulesToSaveWrappers();
    const set = (flag: boolean) => {
      for (const l of layers) l.setDisabled(flag);
      for (const w of wrappers) w.setDisabled(flag);
    };
    set(true);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      set(false);
      throw e;
    }
    if (result instanceof Promise) return result.finally(() => set(false)) as T;
    set(false);
    return result;
  }

  /** Removes an adapter everywhere; it must not be merged. */
  deleteAdapter(name: string): void {
    this.assertKnown([name]);
    const layers = this.loraLayers();
    const merged = layers.filter((l) => l.mergedAdapters.includes(name));
    if (merged.length) {
      throw new MergeError(
        `Cannot delete adapter(s) ['${name}'] while they are merged (module '${merged[0]!._path}'). Please unmerge them first.`,
        merged[0]!._path,
        name,
      );
    }
    for (const l of layers) l.deleteAdapter(name);
    for (const w of this.modulesToSaveWrappers()) w.deleteAdapter(name);
    this.peftConfig.delete(name);
    const remaining = this._active.filter((n) => n !== name);
    const next = remaining.length ? remaining : [...this.peftConfig.keys()].slice(0, 1);
    if (next.length) this.setAdapter(next);
    else this._active = [];
  }

  // ------------------------------------------------------------ forward

  /**
   * Runs the wrapped model. With `adapterNames` (one per sample; `'__base__'` = none) each sample gets its
   * own adapter — DoRA adapters included, unlike PEFT.
   */
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    if (options.adapterNames) return this.withAdapterNames(options.adapterNames, () => this.base_model.forward(x));
    return this.base_model.forward(x);
  }

  /** Runs `fn` (any call into the wrapped model) with per-sample adapters (mixed-batch inference). */
  withAdapterNames<T>(adapterNames: readonly string[], fn: () => T): T {
    if (this.training) throw new LoraConfigError('Cannot pass `adapter_names` when the model is in training mode.');
    const unknown = [...new Set(adapterNames)].filter((n) => n !== BASE_ADAPTER_NAME && !this.peftConfig.has(n));
    if (unknown.length) throw new AdapterNameError(`Trying to infer with non-existing adapter(s): ${unknown.join(', ')}`);
    const layers = this.loraLayers();
    const merged = layers.find((l) => l.merged);
    if (merged)
      throw new MergeError(
        `Cannot pass \`adapter_names\` when there are merged adapters (module '${merged._path}'), please call \`unmergeAdapter\` first.`,
        merged._path,
        merged.mergedAdapters.join(','),
      );
    return withBatchAdapterNames([...layers, ...this.modulesToSaveWrappers()], adapterNames, fn);
  }

  // ------------------------------------------------------------ merging

  private async offloadForNames(names: readonly string[]): Promise<Backend | null> {
    for (const n of names) {
      const c = this.peftConfig.get(n);
      if (c?.ephemeralGpuOffload) return this._offload.forConfig(c);
    }
    return null;
  }

  /**
   * Merges adapters into the base weights, in order, each DoRA norm from the unmerged base (so merged =
   * unmerged, also for several DoRA adapters on one layer). Adapters already merged are skipped.
   */
  async mergeAdapter(adapterNames?: readonly string[], options: { safeMerge?: boolean } = {}): Promise<void> {
    const names = [...(adapterNames ?? this._active)];
    this.assertKnown(names);
    const work = this.loraLayers()
      .map((layer) => ({ layer, names: names.filter((n) => layer.settings(n) && !layer.mergedAdapters.includes(n)) }))
      .filter((w) => w.names.length > 0);
    if (work.length === 0) {
      warn('already-merged', 'All adapters are already merged, nothing to do.');
      return;
    }
    const plans = work.map((w) => planLayerMerge(w.layer, w.names));
    warnQuantizedRounding(
      'Merge',
      plans.map((p) => p.layer),
    );
    const offload = await this.offloadForNames(names);
    if (!options.safeMerge) {
      for (const plan of plans) commitLayerMerge(await computeLayerMerge(plan, offload));
      return;
    }
    // Safe merge: compute and check every layer before installing any, so a broken adapter changes nothing.
    const computed: ComputedMerge[] = [];
    try {
      for (const plan of plans) {
        const c = await computeLayerMerge(plan, offload);
        computed.push(c);
        await assertFinite(
          c.weight,
          c.layer,
          plan.adding.map((a) => a.name),
        );
      }
    } catch (e) {
      computed.forEach(disposeComputed);
      throw e;
    }
    computed.forEach(commitLayerMerge);
  }

  /** Restores the unmerged base weights of every merged layer. */
  async unmergeAdapter(): Promise<void> {
    const layers = this.loraLayers().filter((l) => l.merged);
    if (layers.length === 0) {
      warn('nothing-merged', 'Already unmerged. Nothing to do.');
      return;
    }
    warnQuantizedRounding('Unmerge', layers);
    for (const layer of layers) {
      const offload = await this.offloadForNames(layer.mergedAdapters);
      const w = await computeLayerUnmerge(layer, offload);
      layer.commitUnmerge(w);
      releaseCommitted(w);
    }
  }

  /** Merges (default: the active adapters) and returns the base model with plain layers again. */
  async mergeAndUnload(options: MergeOptions = {}): Promise<M> {
    const names = [...(options.adapterNames ?? this._active)];
    if (options.dtype !== undefined && options.dtype !== 'float32' && options.dtype !== 'bfloat16') {
      throw new MergeError(`mergeAndUnload: dtype '${String(options.dtype)}' is not supported (float32 or bfloat16)`, '', '');
    }
    // A dense result: adapted quantized bases become float32 Linears first, so the merge runs in float32.
    const densePaths = options.dtype
      ? this.loraLayers()
          .filter(densifyBase)
          .map((l) => l.path)
      : [];
    const pending = this.loraLayers().some((l) => names.some((n) => l.settings(n) && !l.mergedAdapters.includes(n)));
    if (pending) await this.mergeAdapter(names, { safeMerge: options.safeMerge });
    const model = this.unloadLayers();
    if (options.dtype) {
      for (const path of densePaths) castWeight(model.getSubmodule(path) as Linear, options.dtype);
      for (const [path, m] of model.namedModules()) {
        if (m instanceof QuantizedLinear) {
          model.setSubmodule(path, dequantizeLinear(m, options.dtype));
          m.weight.dispose();
        }
      }
    }
    return model;
  }

  /** Removes every adapter without merging and returns the base model (merged weights stay merged, as PEFT). */
  unload(): M {
    return this.unloadLayers();
  }

  private unloadLayers(): M {
    const model = this.base_model.model;
    for (const [path, m] of model.namedModules()) {
      if (isLoraLayer(m)) {
        m.forgetMerges();
        for (const name of m.adapterNames) m.deleteAdapter(name);
        model.setSubmodule(path, m.base_layer);
      } else if (m instanceof ModulesToSaveWrapper) {
        const active = m.activeAdapter ? m.modules_to_save.get(m.activeAdapter) : undefined;
        for (const name of m.adapterNames) if (m.modules_to_save.get(name) !== active) m.deleteAdapter(name);
        // PEFT keeps the trained copy (the active adapter's) in the unloaded model.
        model.setSubmodule(path, active ?? m.original_module);
        if (active) m.original_module.dispose();
      }
    }
    this.peftConfig.clear();
    this._active = [];
    return model;
  }

  // ------------------------------------------------------------ combination, saving, reporting

  /** PEFT's add_weighted_adapter for plain LoRA ('cat', 'linear'); DoRA adapters are refused (#3761). */
  async addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    combinationType: WeightedCombination = 'cat',
  ): Promise<void> {
    await addWeightedAdapter(this, adapters, weights, adapterName, combinationType);
  }

  /** Writes each adapter in PEFT's format: `default` into `dir`, others into `dir/<name>`. */
  async savePretrained(target: SaveTarget, options: SavePretrainedOptions = {}): Promise<void> {
    await savePretrained(this, target, options);
  }

  /** [trainable, all] parameter counts (tied parameters once). */
  getNbTrainableParameters(): { trainable: number; all: number } {
    let trainable = 0;
    let all = 0;
    for (const p of this.parameters()) {
      all += p.size;
      if (p.requiresGrad) trainable += p.size;
    }
    return { trainable, all };
  }

  /** Prints (and returns) PEFT's line: `trainable params: 1,234 || all params: 5,678 || trainable%: 21.7324`. */
  printTrainableParameters(log: (line: string) => void = console.log): string {
    const { trainable, all } = this.getNbTrainableParameters();
    const fmt = (n: number) => n.toLocaleString('en-US');
    const line = `trainable params: ${fmt(trainable)} || all params: ${fmt(all)} || trainable%: ${(all ? (100 * trainable) / all : 0).toFixed(4)}`;
    log(line);
    return line;
  }
}

/** Wraps `model` with a first adapter: PEFT's `get_peft_model`. */
export function getPeftModel<M extends Module>(
  model: M,
  config: LoraConfig,
  adapterName = 'default',
  options: PeftModelOptions = {},
): Promise<PeftModel<M>> {
  return PeftModel.create(model, config, adapterName, options);
}

/** Replaces an adapted quantized base with a float32 Linear of its dequantized weight (merges stay valid). */
function densifyBase(layer: LoraLayer): boolean {
  const q = layer.quantizedBase;
  if (!q) return false;
  (layer as LoraLayer<Layer>).base_layer = dequantizeLinear(q, 'float32');
  q.weight.dispose();
  layer.clearDoraCaches();
  return true;
}

/** A merged dense weight stored in `dtype` (bfloat16: rounded once from float32, frozen). */
function castWeight(lin: Linear, dtype: 'float32' | 'bfloat16'): void {
  if (dtype === 'float32' || lin.weight.dtype === dtype) return;
  const narrow = noGrad(() => ops.cast(lin.weight, dtype));
  lin.weight.assign(narrow, { changeDtype: true });
  lin.weight.requiresGrad = false;
  narrow.dispose();
}

/** PEFT warns once when merging into (or unmerging from) a bitsandbytes layer: the weight is requantized. */
function warnQuantizedRounding(what: 'Merge' | 'Unmerge', layers: readonly LoraLayer[]): void {
  const q = layers.map((l) => l.quantizedBase).find((b) => b !== null);
  if (!q) return;
  const bits = q.format === 'int8' ? '8-bit' : '4-bit';
  warn('quantized-merge-rounding', `${what} lora module to ${bits} linear may get different generations due to rounding errors.`);
}
