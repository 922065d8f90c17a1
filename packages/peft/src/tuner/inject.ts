/**
 * Adapter injection in two steps, so that bad input never leaves a half-adapted model:
 * `planInjection` decides every target, rank, scale and tensor shape without touching the model (and
 * throws on anything wrong); `applyInjection` then wraps the layers and installs tensors that were all
 * computed beforehand.
 */
import {
  type Backend,
  Conv1D,
  Conv1d,
  Conv2d,
  Conv3d,
  Embedding,
  Layer,
  Linear,
  loraScaling,
  noGrad,
  QuantizedLinear,
  QuantizedWeight,
  tidy,
  type Module,
  type Random,
} from '@dorajs/core';
import type { LoraConfig } from '../config/lora-config.js';
import { AdapterNameError, LoraConfigError, TargetNotFoundError } from '../errors.js';
import type { AdapterShapes, LoraLayer } from '../layers/lora-layer.js';
import { resolveVariant } from '../variants/index.js';
import type { AdapterSettings, AdapterTensors } from '../variants/variant.js';
import { LoraConv1d, LoraConv3d } from '../layers/lora-conv-nd.js';
import { LoraConv2d } from '../layers/lora-conv2d.js';
import { LoraEmbedding } from '../layers/lora-embedding.js';
import { LoraLinear } from '../layers/lora-linear.js';
import { isLoraLayer } from '../layers/kinds.js';
import { ModulesToSaveWrapper } from '../layers/modules-to-save.js';
import { initialAdapterWeights } from '../layers/init-weights.js';
import { warn, type PeftWarningCode } from '../warnings.js';
import {
  expandAllLinear,
  isExcluded,
  isTarget,
  isTargetableLayer,
  matchesModuleList,
  rankAndAlpha,
  type TargetableLayer,
} from './targeting.js';
import { runOffloaded } from './offload.js';

/** `fan-in-fan-out` is transformers' GPT-2 Conv1D; `conv1d`/`conv2d`/`conv3d` are PyTorch's nn.ConvNd. */
export type TargetKind = 'linear' | 'fan-in-fan-out' | 'embedding' | 'conv1d' | 'conv2d' | 'conv3d';

export interface TargetPlan {
  readonly path: string;
  readonly kind: TargetKind;
  /** The layer as it is now: a plain layer, or a LoRA layer that gets one more adapter. */
  readonly current: TargetableLayer | LoraLayer;
  /** The LoRA layer to add the adapter to (a new wrapper when `current` is plain; not yet installed). */
  readonly layer: LoraLayer;
  readonly settings: AdapterSettings;
  readonly shapes: AdapterShapes;
}

export interface ModulesToSavePlan {
  readonly path: string;
  readonly current: Layer | ModulesToSaveWrapper;
}

export interface InjectionPlan {
  /** The config as it will be stored: 'all-linear' expanded, fan_in_fan_out corrected. */
  readonly config: LoraConfig;
  readonly adapterName: string;
  readonly targets: readonly TargetPlan[];
  readonly modulesToSave: readonly ModulesToSavePlan[];
  readonly warnings: readonly { code: PeftWarningCode; message: string }[];
}

/** Every module PEFT could target or wrap, without descending into existing wrappers. */
function candidates(model: Module): [string, Module][] {
  const out: [string, Module][] = [];
  const walk = (m: Module, prefix: string) => {
    for (const [name, child] of m.namedChildren()) {
      const path = prefix ? `${prefix}.${name}` : name;
      out.push([path, child]);
      if (!isLoraLayer(child) && !(child instanceof ModulesToSaveWrapper)) walk(child, path);
    }
  };
  walk(model, '');
  return out;
}

const baseOf = (m: Module): Module => (isLoraLayer(m) ? m.base_layer : m);

function kindOf(m: TargetableLayer): TargetKind {
  if (m instanceof Conv1D) return 'fan-in-fan-out';
  if (m instanceof Linear || m instanceof QuantizedLinear) return 'linear';
  if (m instanceof Embedding) return 'embedding';
  if (m instanceof Conv1d) return 'conv1d';
  if (m instanceof Conv3d) return 'conv3d';
  return 'conv2d';
}

function describeTargets(t: readonly string[] | string | null): string {
  return t === null ? 'null' : typeof t === 'string' ? `'${t}'` : `[${t.map((x) => `'${x}'`).join(', ')}]`;
}

export function planInjection(
  model: Module,
  configIn: LoraConfig,
  adapterName: string,
  purpose: 'create' | 'load' = 'create',
): InjectionPlan {
  if (configIn.targetModules === null) {
    throw new LoraConfigError('targetModules must be given: dorajs has no per-architecture defaults (PEFT looks them up by model type)');
  }
  const all = candidates(model);
  let config = configIn;
  if (config.targetModules === 'all-linear') {
    config = config.with({
      targetModules: expandAllLinear(
        model,
        all.map(([p, m]) => [p, baseOf(m)]),
      ),
    });
  }
  const targetsSpec = config.targetModules!;
  const warnings: { code: PeftWarningCode; message: string }[] = [];
  const saveSpec = config.modulesToSave;
  const modulesToSave: ModulesToSavePlan[] = [];
  const targets: TargetPlan[] = [];
  let fanInFanOut = config.fanInFanOut;

  for (const [path, module] of all) {
    if (saveSpec && matchesModuleList(saveSpec, path)) {
      if (!(module instanceof Layer))
        throw new LoraConfigError(`modules_to_save: module '${path}' (${module.typeName}) has no forward(x) and cannot be wrapped`);
      modulesToSave.push({ path, current: module });
      continue;
    }
    const base = baseOf(module);
    if (!isTargetableLayer(base) || !isTarget(config, targetsSpec, path) || isExcluded(config, path)) continue;
    const existing = isLoraLayer(module) ? module : null;
    if (existing?.settings(adapterName)) throw new AdapterNameError(`module '${path}' already has an adapter named '${adapterName}'`);
    const kind = kindOf(base);
    if (kind === 'fan-in-fan-out' && !fanInFanOut) {
      warnings.push({
        code: 'fan-in-fan-out-corrected',
        message: `fan_in_fan_out is set to False but the target module '${path}' is \`Conv1D\`. Setting fan_in_fan_out to True.`,
      });
      fanInFanOut = true;
    } else if (kind === 'linear' && fanInFanOut) {
      warnings.push({
        code: 'fan-in-fan-out-corrected',
        message: `fan_in_fan_out is set to True but the target module '${path}' is \`Linear\`. Setting fan_in_fan_out to False.`,
      });
      fanInFanOut = false;
    }
    const { r, alpha } = rankAndAlpha(config, path);
    if (base instanceof Conv2d || base instanceof Conv1d || base instanceof Conv3d) {
      const conv = base.typeName;
      const groups = base.params.groups;
      if (r % groups !== 0) {
        throw new LoraConfigError(
          `Targeting a ${conv} ('${path}') with groups=${groups} and rank ${r}. Currently, support is limited to conv layers where the rank is divisible by groups. Either choose a different rank or do not target this specific layer.`,
        );
      }
      if (groups > 1)
        warnings.push({
          code: 'conv-groups',
          message: `LoRA adapter added to ${conv} layer '${path}' with groups > 1: its delta is not grouped, so merging turns the layer into the equivalent dense (groups 1) conv (PEFT refuses to merge it).`,
        });
      if (base.params.dilation.some((d) => d !== 1)) {
        const dil = `[${base.params.dilation.join(', ')}]`;
        warnings.push({
          code: 'conv-dilation',
          message:
            purpose === 'load'
              ? `${conv} '${path}' has dilation ${dil}: PEFT ran this adapter's lora_A with dilation 1, dorajs runs it with the base dilation (so that merged = unmerged); outputs differ from PEFT's`
              : `${conv} '${path}' has dilation ${dil}: dorajs gives lora_A the base dilation (so merged = unmerged); PEFT uses dilation 1, so this adapter computes something else in PEFT`,
        });
      }
    }
    const layer = existing ?? wrap(base, path);
    const settings: AdapterSettings = {
      r,
      alpha,
      scaling: loraScaling(alpha, r, config.useRslora),
      useRslora: config.useRslora,
      dropout: config.loraDropout,
      variant: resolveVariant(config),
    };
    targets.push({ path, kind, current: existing ?? base, layer, settings, shapes: layer.adapterShapes(r) });
  }
  if (targets.length === 0) {
    const names = all.filter(([, m]) => isTargetableLayer(baseOf(m))).map(([p]) => p);
    throw new TargetNotFoundError(describeTargets(configIn.targetModules), names);
  }
  if (saveSpec) {
    for (const entry of saveSpec) {
      if (!modulesToSave.some((m) => m.path === entry || m.path.endsWith(`.${entry}`))) {
        throw new LoraConfigError(`modules_to_save: '${entry}' matches no module of the model`);
      }
    }
  }
  if (fanInFanOut !== config.fanInFanOut) config = config.with({ fanInFanOut });
  return { config, adapterName, targets, modulesToSave, warnings };
}

function wrap(base: TargetableLayer, path: string): LoraLayer {
  if (base instanceof Embedding) return new LoraEmbedding(base, path);
  if (base instanceof Conv2d) return new LoraConv2d(base, path);
  if (base instanceof Conv1d) return new LoraConv1d(base, path);
  if (base instanceof Conv3d) return new LoraConv3d(base, path);
  return new LoraLinear(base, path);
}

/** Adapter tensors for every target: given ones (a checkpoint), or freshly initialised (with DoRA norms). */
export async function computeAdapterTensors(
  plan: InjectionPlan,
  given: (target: TargetPlan) => AdapterTensors | null,
  options: { random?: Random; offload: Backend | null },
): Promise<AdapterTensors[]> {
  const out: AdapterTensors[] = [];
  try {
    for (const target of plan.targets) {
      const provided = given(target);
      if (provided) {
        out.push(provided);
        continue;
      }
      const w = target.layer.baseWeight;
      const { a, b } = initialAdapterWeights(
        target.layer.geometry,
        target.shapes,
        target.settings.r,
        plan.config.initLoraWeights,
        w.backend,
        options.random,
      );
      const { variant, scaling } = target.settings;
      const dense = target.layer.denseWeight();
      const state = !variant.stateTensors.length
        ? {}
        : dense instanceof QuantizedWeight
          ? // A packed base stays where it is: core's narrow norm reads it in place (no copy to move).
            tidy(() => noGrad(() => variant.init(target.layer.geometry, dense, a, b, scaling)))
          : await runOffloaded(options.offload, w.backend, { w: dense, a, b }, (t) =>
              variant.init(target.layer.geometry, t.w, t.a, t.b, scaling),
            );
      out.push({ ...state, a, b });
    }
  } catch (e) {
    for (const t of out) disposeTensors(t);
    throw e;
  }
  return out;
}

/** Installs the planned adapter. Cannot fail on user input: every check ran in planInjection. */
export function applyInjection(model: Module, plan: InjectionPlan, tensors: readonly AdapterTensors[], random?: Random): void {
  for (const w of plan.warnings) warn(w.code, w.message);
  plan.targets.forEach((target, i) => {
    const t = tensors[i]!;
    target.layer.addAdapter(plan.adapterName, target.settings, t, random);
    // The parameters now hold their own references to these buffers.
    disposeTensors(t);
    if (target.current !== target.layer) {
      target.layer.train(target.current.training);
      model.setSubmodule(target.path, target.layer);
    }
  });
  for (const { path, current } of plan.modulesToSave) {
    const wrapper = current instanceof ModulesToSaveWrapper ? current : new ModulesToSaveWrapper(current, path);
    wrapper.addAdapter(plan.adapterName);
    if (wrapper !== current) {
      wrapper.training = current.training;
      model.setSubmodule(path, wrapper);
    }
  }
}

/** Releases one adapter's tensors (A, B and any variant tensors). */
export function disposeTensors(t: AdapterTensors): void {
  for (const x of Object.values(t)) x?.dispose();
}
