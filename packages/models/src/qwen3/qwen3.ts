/** Qwen3 as transformers' modeling_qwen3.py defines it: Llama with a per-head RMSNorm of q and k before RoPE. */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { LlamaForCausalLM } from '../llama/llama-model.js';
import { QWEN_DEFAULTS } from '../qwen2/qwen2.js';
import type { ModelOptions } from '../shared/causal-lm.js';
import { type DecoderConfig, parseDecoderConfig, readQwenWindows } from '../shared/decoder-config.js';

export interface Qwen3Config extends DecoderConfig {
  readonly modelType: 'qwen3';
}

export function parseQwen3Config(json: JsonObject, file = 'config.json'): Qwen3Config {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'qwen3', { ...QWEN_DEFAULTS, headDim: 128 });
  const bias = f.boolean('attention_bias', false);
  return { ...base, ...readQwenWindows(f, base.numHiddenLayers), modelType: 'qwen3', qkvBias: bias, oBias: bias, qkNorm: true };
}

export class Qwen3ForCausalLM extends LlamaForCausalLM<Qwen3Config> {
  static override readonly typeName: string = 'Qwen3ForCausalLM';
  constructor(config: Qwen3Config, options: ModelOptions = {}) {
    super(config, options);
  }
}
