/**
 * The model types this package implements, keyed by config.json's `model_type`. The loader dispatches
 * here; adding an architecture is one entry.
 */
import { preview } from '@dorajs/core';
import type { JsonObject } from './config/config-fields.js';
import { ModelConfigError, UnsupportedModelError } from './errors.js';
import { parseGPT2Config } from './gpt2/gpt2-config.js';
import { GPT2LMHeadModel } from './gpt2/gpt2-model.js';
import { Gemma2ForCausalLM, parseGemma2Config } from './gemma2/gemma2.js';
import { parseLlamaConfig } from './llama/llama-config.js';
import { decoderMaxPositions, LlamaForCausalLM } from './llama/llama-model.js';
import type { DecoderConfig } from './shared/decoder-config.js';
import { MistralForCausalLM, parseMistralConfig } from './mistral/mistral.js';
import { parsePhi3Config, Phi3ForCausalLM } from './phi3/phi3.js';
import { parseQwen2Config, Qwen2ForCausalLM } from './qwen2/qwen2.js';
import { parseQwen3Config, Qwen3ForCausalLM } from './qwen3/qwen3.js';
import type { CausalLM, ModelOptions } from './shared/causal-lm.js';

export interface Architecture {
  readonly modelType: string;
  /** transformers' `base_model_prefix`: checkpoints saved from the backbone alone omit it from keys. */
  readonly basePrefix: string;
  /**
   * Checkpoint keys that are buffers, not parameters (GPT-2's causal-mask `attn.bias`, old Llama's
   * `rotary_emb.inv_freq`): not loaded, but kept so a saved checkpoint has the same names.
   */
  readonly isBuffer: (key: string) => boolean;
  /** Builds the model from a parsed config.json object (`file` names it in errors). */
  readonly create: (json: JsonObject, file: string, options: ModelOptions) => CausalLM;
  /** The model's `maxPositions` from config.json alone (validating it), without building anything. */
  readonly maxPositions: (json: JsonObject, file: string) => number;
}

/** Old checkpoints of the Llama-like families saved RoPE's inverse frequencies as a buffer. */
const isRotaryBuffer = (key: string): boolean => key.endsWith('.rotary_emb.inv_freq');

const ARCHITECTURES: readonly Architecture[] = [
  {
    modelType: 'llama',
    basePrefix: 'model',
    isBuffer: isRotaryBuffer,
    create: (json, file, options) => new LlamaForCausalLM(parseLlamaConfig(json, file), options),
    maxPositions: (json, file) => decoderMaxPositions(parseLlamaConfig(json, file)),
  },
  ...(
    [
      ['qwen2', parseQwen2Config, (json, file, options) => new Qwen2ForCausalLM(parseQwen2Config(json, file), options)],
      ['qwen3', parseQwen3Config, (json, file, options) => new Qwen3ForCausalLM(parseQwen3Config(json, file), options)],
      ['mistral', parseMistralConfig, (json, file, options) => new MistralForCausalLM(parseMistralConfig(json, file), options)],
      ['phi3', parsePhi3Config, (json, file, options) => new Phi3ForCausalLM(parsePhi3Config(json, file), options)],
      ['gemma2', parseGemma2Config, (json, file, options) => new Gemma2ForCausalLM(parseGemma2Config(json, file), options)],
    ] as const satisfies readonly (readonly [string, (json: JsonObject, file: string) => DecoderConfig, Architecture['create']])[]
  ).map(([modelType, parse, create]) => ({
    modelType,
    basePrefix: 'model',
    isBuffer: isRotaryBuffer,
    create,
    maxPositions: (json: JsonObject, file: string) => decoderMaxPositions(parse(json, file)),
  })),
  {
    modelType: 'gpt2',
    basePrefix: 'transformer',
    isBuffer: (key) => /(^|\.)attn\.(masked_)?bias$/.test(key),
    create: (json, file, options) => new GPT2LMHeadModel(parseGPT2Config(json, file), options),
    maxPositions: (json, file) => parseGPT2Config(json, file).nPositions,
  },
];

export const SUPPORTED_MODEL_TYPES: readonly string[] = ARCHITECTURES.map((a) => a.modelType);

/** The architecture for `modelType`; `file` names the config in the error for an unknown one. */
export function architectureFor(modelType: string, file: string): Architecture {
  const arch = ARCHITECTURES.find((a) => a.modelType === modelType);
  if (!arch) throw new UnsupportedModelError(modelType, file, SUPPORTED_MODEL_TYPES);
  return arch;
}

/** config.json's `model_type`; `file` names the config in the error when it is missing or not a string. */
export function modelTypeOf(json: JsonObject, file: string): string {
  const modelType = json['model_type'];
  if (typeof modelType !== 'string') {
    throw new ModelConfigError(`must be a string naming the architecture, got ${preview(modelType)}`, file, 'model_type');
  }
  return modelType;
}

/**
 * The positions a model of this config.json can address (`max_position_embeddings`, GPT-2's `n_positions`;
 * unbounded with dynamic NTK RoPE): what `generate` checks prompts against, known before any weight is read.
 */
export function maxPositionsOf(json: JsonObject, file = 'config.json'): number {
  return architectureFor(modelTypeOf(json, file), file).maxPositions(json, file);
}

/** Builds a model from a config.json object, dispatching on its `model_type`. */
export function createModel(json: JsonObject, options: ModelOptions = {}, file = 'config.json'): CausalLM {
  return architectureFor(modelTypeOf(json, file), file).create(json, file, options);
}
