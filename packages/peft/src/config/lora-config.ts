/**
 * LoraConfig: PEFT's LoRA/DoRA configuration with camelCase names. Defaults, validation messages and the
 * adapter_config.json format (snake_case, every key PEFT 0.21.0 writes) follow PEFT; fields dorajs does
 * not model (LoftQ, EVA, Megatron, other variants, …) are carried through unchanged so a file read and
 * written again keeps them.
 */
import { type Backend, preview, quoted } from '@dorajs/core';
import { LoraConfigError } from '../errors.js';

export type LoraBias = 'none' | 'all' | 'lora_only';
/** `true`: Kaiming-uniform A, zero B (Embedding: zero A, normal B); `false`: both random; `'gaussian'`: A ~ N(0, 1/r²). */
export type InitLoraWeights = boolean | 'gaussian';

export interface LoraRuntimeConfig {
  /**
   * Run DoRA's heavy steps (weight norms at init, merges) on an accelerator while the model lives on the CPU:
   * `true` = the WebGPU backend, or a Backend instance. Never saved (PEFT drops it too).
   */
  readonly ephemeralGpuOffload?: boolean | Backend;
}

export interface LoraConfigOptions {
  readonly r?: number;
  readonly loraAlpha?: number;
  readonly loraDropout?: number;
  /**
   * A list entry matches a module whose dotted path equals it or ends with `.` + entry; a string is a
   * full-match regular expression; `'all-linear'` is every Linear/Conv1D except the output layer.
   */
  readonly targetModules?: readonly string[] | string | null;
  /** Same matching rules; an excluded module is never targeted. */
  readonly excludeModules?: readonly string[] | string | null;
  /** The base weight is stored [in, out] (transformers Conv1D). Corrected per layer with a warning. */
  readonly fanInFanOut?: boolean;
  readonly bias?: LoraBias;
  readonly useRslora?: boolean;
  /** Modules trained in full and saved with the adapter (a classifier head, …). */
  readonly modulesToSave?: readonly string[] | null;
  readonly initLoraWeights?: InitLoraWeights | string;
  readonly layersToTransform?: number | readonly number[] | null;
  readonly layersPattern?: string | readonly string[] | null;
  /** Module-path regex (matched as `(.*\.)?(key)$`) → rank; first match wins. */
  readonly rankPattern?: Readonly<Record<string, number>>;
  /** Module-path regex → alpha; first match wins. */
  readonly alphaPattern?: Readonly<Record<string, number>>;
  readonly useDora?: boolean;
  /** A bias on lora_B (PEFT's `lora_bias`). Not supported with DoRA (PEFT refuses it too). */
  readonly loraBias?: boolean;
  readonly taskType?: string | null;
  readonly baseModelNameOrPath?: string | null;
  readonly revision?: string | null;
  readonly inferenceMode?: boolean;
  readonly runtimeConfig?: LoraRuntimeConfig;
  /**
   * adapter_config.json keys dorajs does not model, by their snake_case name (e.g. `loftq_config`), kept
   * as read and written back unchanged.
   */
  readonly extra?: Readonly<Record<string, unknown>>;
}

/**
 * The keys PEFT 0.21.0 writes that dorajs does not interpret, with PEFT's defaults. A value different from
 * the default turns on a feature dorajs does not implement (checked in `unsupportedFeatures`).
 */
export const PASSTHROUGH_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze({
  alora_invocation_tokens: null,
  arrow_config: null,
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  kasa_config: null,
  layer_replication: null,
  loftq_config: {},
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: 'megatron.core',
  monteclora_config: null,
  qalora_group_size: 16,
  target_parameters: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_qalora: false,
  velora_config: null,
});

/** Other LoRA variants (PEFT's `is_lora_variant` fields): none can be combined with DoRA, and dorajs implements none. */
const VARIANT_KEYS = [
  'alora_invocation_tokens',
  'arrow_config',
  'kasa_config',
  'monteclora_config',
  'use_bdlora',
  'velora_config',
] as const;

/** The PEFT release whose adapter format dorajs writes (PEFT fills `peft_version` with its own version). */
export const PEFT_FORMAT_VERSION = '0.21.0';

export class LoraConfig {
  readonly peftType = 'LORA' as const;
  readonly r: number;
  readonly loraAlpha: number;
  readonly loraDropout: number;
  readonly targetModules: readonly string[] | string | null;
  readonly excludeModules: readonly string[] | string | null;
  /** Mutable on purpose: injection corrects it per target type, as PEFT mutates its config. */
  fanInFanOut: boolean;
  readonly bias: LoraBias;
  readonly useRslora: boolean;
  readonly modulesToSave: readonly string[] | null;
  readonly initLoraWeights: InitLoraWeights | string;
  readonly layersToTransform: number | readonly number[] | null;
  readonly layersPattern: string | readonly string[] | null;
  readonly rankPattern: Readonly<Record<string, number>>;
  readonly alphaPattern: Readonly<Record<string, number>>;
  readonly useDora: boolean;
  readonly loraBias: boolean;
  readonly taskType: string | null;
  baseModelNameOrPath: string | null;
  readonly revision: string | null;
  inferenceMode: boolean;
  readonly runtimeConfig: LoraRuntimeConfig;
  /** Set from the file when loaded; otherwise the format version dorajs writes. */
  peftVersion: string;
  /** PEFT's `auto_mapping` (written only when taskType is null). */
  autoMapping: Readonly<Record<string, unknown>> | null;
  readonly extra: Readonly<Record<string, unknown>>;

  constructor(options: LoraConfigOptions = {}) {
    this.r = options.r ?? 8;
    this.loraAlpha = options.loraAlpha ?? 8;
    this.loraDropout = options.loraDropout ?? 0;
    this.targetModules = freezeTargets(options.targetModules ?? null);
    this.excludeModules = freezeTargets(options.excludeModules ?? null);
    this.fanInFanOut = options.fanInFanOut ?? false;
    this.bias = options.bias ?? 'none';
    this.useRslora = options.useRslora ?? false;
    this.modulesToSave = options.modulesToSave ? Object.freeze([...options.modulesToSave]) : null;
    this.initLoraWeights = options.initLoraWeights ?? true;
    this.layersToTransform =
      options.layersToTransform === undefined || options.layersToTransform === null
        ? null
        : typeof options.layersToTransform === 'number'
          ? options.layersToTransform
          : Object.freeze([...options.layersToTransform]);
    this.layersPattern =
      options.layersPattern === undefined || options.layersPattern === null
        ? null
        : typeof options.layersPattern === 'string'
          ? options.layersPattern
          : Object.freeze([...options.layersPattern]);
    this.rankPattern = Object.freeze({ ...(options.rankPattern ?? {}) });
    this.alphaPattern = Object.freeze({ ...(options.alphaPattern ?? {}) });
    this.useDora = options.useDora ?? false;
    this.loraBias = options.loraBias ?? false;
    this.taskType = options.taskType ?? null;
    this.baseModelNameOrPath = options.baseModelNameOrPath ?? null;
    this.revision = options.revision ?? null;
    this.inferenceMode = options.inferenceMode ?? false;
    this.runtimeConfig = Object.freeze({ ...(options.runtimeConfig ?? {}) });
    this.peftVersion = PEFT_FORMAT_VERSION;
    this.autoMapping = null;
    this.extra = Object.freeze({ ...(options.extra ?? {}) });
    validate(this);
  }

  /** A copy with some options replaced (validated again). */
  with(overrides: LoraConfigOptions): LoraConfig {
    const copy = new LoraConfig({ ...this.options(), ...overrides });
    copy.peftVersion = this.peftVersion;
    copy.autoMapping = this.autoMapping;
    return copy;
  }

  /** The options this config was built from (after defaults). */
  options(): LoraConfigOptions {
    return {
      r: this.r,
      loraAlpha: this.loraAlpha,
      loraDropout: this.loraDropout,
      targetModules: this.targetModules,
      excludeModules: this.excludeModules,
      fanInFanOut: this.fanInFanOut,
      bias: this.bias,
      useRslora: this.useRslora,
      modulesToSave: this.modulesToSave,
      initLoraWeights: this.initLoraWeights,
      layersToTransform: this.layersToTransform,
      layersPattern: this.layersPattern,
      rankPattern: this.rankPattern,
      alphaPattern: this.alphaPattern,
      useDora: this.useDora,
      loraBias: this.loraBias,
      taskType: this.taskType,
      baseModelNameOrPath: this.baseModelNameOrPath,
      revision: this.revision,
      inferenceMode: this.inferenceMode,
      runtimeConfig: this.runtimeConfig,
      extra: this.extra,
    };
  }

  /** The offload backend request, if any. */
  get ephemeralGpuOffload(): boolean | Backend {
    return this.runtimeConfig.ephemeralGpuOffload ?? false;
  }

  /**
   * Features of this config that dorajs does not implement (other LoRA variants, LoftQ/PiSSA-style inits,
   * layer replication, …), as `name = value` strings. Empty when dorajs computes exactly what PEFT does.
   */
  unsupportedFeatures(): string[] {
    const out: string[] = [];
    for (const [key, def] of Object.entries(PASSTHROUGH_DEFAULTS)) {
      const v = key in this.extra ? this.extra[key] : def;
      if (key === 'megatron_core' || key === 'qalora_group_size' || key === 'ensure_weight_tying' || key === 'loftq_config') continue;
      if (!sameJson(v, def) && !(key === 'use_bdlora' && v === false)) out.push(`${key} = ${JSON.stringify(v)}`);
    }
    if (this.loraBias) out.push('lora_bias = true');
    return out;
  }
}

function freezeTargets(t: readonly string[] | string | null): readonly string[] | string | null {
  return t === null || typeof t === 'string' ? t : Object.freeze([...t]);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The checks PEFT's `LoraConfig.__post_init__` makes for LoRA and DoRA, with PEFT's messages. */
function validate(c: LoraConfig): void {
  if (!Number.isInteger(c.r) || c.r <= 0)
    throw new LoraConfigError(`\`r\` should be a positive integer value but the value passed is ${c.r}`);
  if (!Number.isFinite(c.loraAlpha)) throw new LoraConfigError(`lora_alpha must be a finite number, got ${c.loraAlpha}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1)) throw new LoraConfigError(`lora_dropout must be in [0, 1), got ${c.loraDropout}`);
  if (!['none', 'all', 'lora_only'].includes(c.bias))
    throw new LoraConfigError(`bias must be 'none', 'all' or 'lora_only', got ${quoted(c.bias)}`);
  for (const [name, pattern] of [
    ['rank_pattern', c.rankPattern],
    ['alpha_pattern', c.alphaPattern],
  ] as const) {
    for (const [key, value] of Object.entries(pattern)) {
      if (!Number.isFinite(value) || (name === 'rank_pattern' && (!Number.isInteger(value) || value <= 0))) {
        throw new LoraConfigError(`${name}['${key}'] must be a ${name === 'rank_pattern' ? 'positive integer' : 'number'}, got ${value}`);
      }
    }
  }
  // Pattern syntax is checked when the adapter is added (patterns.ts compiles them on RE2, loaded lazily).
  if (typeof c.targetModules === 'string' && (c.layersToTransform !== null || c.layersPattern !== null)) {
    throw new LoraConfigError('`layers_to_transform` cannot be used when `target_modules` is a str.');
  }
  if (c.layersPattern !== null && c.layersToTransform === null) {
    throw new LoraConfigError('When `layers_pattern` is specified, `layers_to_transform` must also be specified. ');
  }
  const layers = c.layersToTransform;
  if (layers !== null && (typeof layers === 'number' ? [layers] : layers).some((l) => !Number.isInteger(l) || l < 0)) {
    throw new LoraConfigError(`layers_to_transform must hold non-negative integers, got ${preview(layers)}`);
  }
  if (c.useDora && c.extra['megatron_config'] !== undefined && c.extra['megatron_config'] !== null) {
    throw new LoraConfigError('DoRA does not support megatron_core, please set `use_dora=False`.');
  }
  if (c.loraBias && c.useDora) {
    throw new LoraConfigError('The argument lora_bias=True is not supported for DoRA, please pass use_dora=False');
  }
  if (c.useDora) {
    const variants = VARIANT_KEYS.filter((k) => k in c.extra && c.extra[k] !== null && c.extra[k] !== false);
    if (variants.length) {
      throw new LoraConfigError(
        `Invalid or unsupported variant combination: (${['use_dora', ...variants]
          .sort()
          .map((v) => `'${v}'`)
          .join(', ')})`,
      );
    }
    if (c.initLoraWeights === 'mica') throw new LoraConfigError("Invalid or unsupported variant combination: ('mica', 'use_dora')");
  }
  const rt = c.runtimeConfig.ephemeralGpuOffload;
  if (
    rt !== undefined &&
    typeof rt !== 'boolean' &&
    (typeof rt !== 'object' || rt === null || typeof (rt as Backend).matmul !== 'function')
  ) {
    throw new LoraConfigError('runtimeConfig.ephemeralGpuOffload must be a boolean or a Backend instance');
  }
}
