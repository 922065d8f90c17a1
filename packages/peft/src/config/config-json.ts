/**
 * adapter_config.json ↔ LoraConfig. Written like PEFT's `save_pretrained`: every key PEFT 0.21.0 writes,
 * sorted, indent 2, `inference_mode: true`, no `runtime_config`. Read like PEFT's loader: only `peft_type`
 * is required, missing keys take PEFT's defaults, unknown keys are kept (and written back).
 */
import { parseJsonBounded, preview, quoted } from '@dorajs/core';
import { AdapterFileError, LoraConfigError } from '../errors.js';
import { warn } from '../warnings.js';
import { type InitLoraWeights, type LoraBias, LoraConfig, PASSTHROUGH_DEFAULTS } from './lora-config.js';
import { PyFloat, type PyJsonValue, pythonJsonDumps } from './python-json.js';

export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';

/** The keys dorajs interprets (everything else is passthrough). */
const MODELED_KEYS = new Set([
  'alpha_pattern',
  'auto_mapping',
  'base_model_name_or_path',
  'bias',
  'exclude_modules',
  'fan_in_fan_out',
  'inference_mode',
  'init_lora_weights',
  'layers_pattern',
  'layers_to_transform',
  'lora_alpha',
  'lora_bias',
  'lora_dropout',
  'modules_to_save',
  'peft_type',
  'peft_version',
  'r',
  'rank_pattern',
  'revision',
  'target_modules',
  'task_type',
  'use_dora',
  'use_rslora',
]);

/** The object PEFT would write for `config` (before JSON text). */
export function configToJson(config: LoraConfig): Record<string, PyJsonValue> {
  const out: Record<string, PyJsonValue> = {};
  for (const [k, v] of Object.entries(PASSTHROUGH_DEFAULTS)) out[k] = v as PyJsonValue;
  for (const [k, v] of Object.entries(config.extra)) out[k] = v as PyJsonValue;
  Object.assign(out, {
    alpha_pattern: { ...config.alphaPattern },
    auto_mapping: config.taskType === null ? ((config.autoMapping as PyJsonValue) ?? null) : null,
    base_model_name_or_path: config.baseModelNameOrPath,
    bias: config.bias,
    exclude_modules: listOrString(config.excludeModules),
    fan_in_fan_out: config.fanInFanOut,
    inference_mode: true,
    init_lora_weights: config.initLoraWeights,
    layers_pattern: listOrString(config.layersPattern),
    layers_to_transform: typeof config.layersToTransform === 'number' ? config.layersToTransform : listOrString(config.layersToTransform),
    lora_alpha: config.loraAlpha,
    lora_bias: config.loraBias,
    // PEFT's lora_dropout is a Python float: written 0.0, not 0.
    lora_dropout: new PyFloat(config.loraDropout),
    modules_to_save: listOrString(config.modulesToSave),
    peft_type: 'LORA',
    peft_version: config.peftVersion,
    r: config.r,
    rank_pattern: { ...config.rankPattern },
    revision: config.revision,
    target_modules: listOrString(config.targetModules),
    task_type: config.taskType,
    use_dora: config.useDora,
    use_rslora: config.useRslora,
  } satisfies Record<string, PyJsonValue>);
  if (config.taskType !== null) delete out['auto_mapping'];
  return out;
}

function listOrString(v: readonly (string | number)[] | string | null): PyJsonValue {
  return v === null ? null : typeof v === 'string' ? v : [...v];
}

/** adapter_config.json text, byte-for-byte as PEFT writes it for the same values. */
export function configToJsonText(config: LoraConfig): string {
  return pythonJsonDumps(configToJson(config));
}

/** Parses adapter_config.json text; `file` names it in errors. */
export function configFromJsonText(text: string, file = ADAPTER_CONFIG_NAME): LoraConfig {
  const parsed = parseJsonBounded(text, (reason, cause) => new AdapterFileError(reason, file, { cause }));
  return configFromJson(parsed, file);
}

/** Builds a LoraConfig from a parsed adapter_config.json object. */
export function configFromJson(json: unknown, file = ADAPTER_CONFIG_NAME): LoraConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new AdapterFileError('expected a JSON object', file);
  const o = json as Record<string, unknown>;
  if (!('peft_type' in o)) throw new AdapterFileError("no 'peft_type' key: not a PEFT adapter config", file);
  if (o['peft_type'] !== 'LORA') {
    throw new AdapterFileError(`peft_type ${quoted(o['peft_type'])} is not supported (dorajs loads LORA adapters, including DoRA)`, file);
  }
  if ('runtime_config' in o)
    warn('runtime-config-dropped', `${file}: 'runtime_config' is never loaded from a file; ignoring it (as PEFT does)`);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (MODELED_KEYS.has(k) || k === 'runtime_config') continue;
    if (!(k in PASSTHROUGH_DEFAULTS)) warn('unknown-config-key', `${file}: unknown key '${k}' kept as is`);
    extra[k] = v;
  }
  const field = <T>(key: string, check: (v: unknown) => boolean, what: string, fallback: T): T => {
    if (!(key in o) || o[key] === undefined) return fallback;
    const v = o[key];
    if (!check(v)) throw new AdapterFileError(`'${key}' must be ${what}, got ${preview(v)}`, file);
    return v as T;
  };
  const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const isBool = (v: unknown) => typeof v === 'boolean';
  const isStrOrNull = (v: unknown) => v === null || typeof v === 'string';
  const isStrListOrStr = (v: unknown) => v === null || typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
  const isNumMap = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v as object).every(isNum);
  try {
    const config = new LoraConfig({
      r: field('r', isNum, 'a number', 8),
      loraAlpha: field('lora_alpha', isNum, 'a number', 8),
      loraDropout: field('lora_dropout', isNum, 'a number', 0),
      targetModules: field('target_modules', isStrListOrStr, 'a list of strings, a string or null', null),
      excludeModules: field('exclude_modules', isStrListOrStr, 'a list of strings, a string or null', null),
      fanInFanOut: field('fan_in_fan_out', isBool, 'a boolean', false),
      bias: field<LoraBias>('bias', (v) => v === 'none' || v === 'all' || v === 'lora_only', "'none', 'all' or 'lora_only'", 'none'),
      useRslora: field('use_rslora', isBool, 'a boolean', false),
      modulesToSave: field(
        'modules_to_save',
        (v) => v === null || (Array.isArray(v) && v.every((x) => typeof x === 'string')),
        'a list of strings or null',
        null,
      ),
      initLoraWeights: field<InitLoraWeights | string>(
        'init_lora_weights',
        (v) => typeof v === 'boolean' || typeof v === 'string',
        'a boolean or a string',
        true,
      ),
      layersToTransform: field(
        'layers_to_transform',
        (v) => v === null || isNum(v) || (Array.isArray(v) && v.every(isNum)),
        'an integer, a list of integers or null',
        null,
      ),
      layersPattern: field('layers_pattern', isStrListOrStr, 'a string, a list of strings or null', null),
      rankPattern: field('rank_pattern', isNumMap, 'an object of numbers', {}),
      alphaPattern: field('alpha_pattern', isNumMap, 'an object of numbers', {}),
      useDora: field('use_dora', isBool, 'a boolean', false),
      loraBias: field('lora_bias', isBool, 'a boolean', false),
      taskType: field('task_type', isStrOrNull, 'a string or null', null),
      baseModelNameOrPath: field('base_model_name_or_path', isStrOrNull, 'a string or null', null),
      revision: field('revision', isStrOrNull, 'a string or null', null),
      inferenceMode: field('inference_mode', isBool, 'a boolean', false),
      extra,
    });
    config.peftVersion = field('peft_version', isStrOrNull, 'a string', config.peftVersion);
    config.autoMapping = field<Record<string, unknown> | null>(
      'auto_mapping',
      (v) => v === null || (typeof v === 'object' && !Array.isArray(v)),
      'an object or null',
      null,
    );
    return config;
  } catch (e) {
    if (e instanceof LoraConfigError) throw new AdapterFileError(e.message, file, { cause: e });
    throw e;
  }
}
