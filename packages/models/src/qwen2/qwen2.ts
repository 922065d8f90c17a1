/** Qwen2 / Qwen2.5 as transformers' modeling_qwen2.py defines it: Llama with biases on q, k and v (not o). */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { LlamaForCausalLM } from '../llama/llama-model.js';
import type { ModelOptions } from '../shared/causal-lm.js';
import { type DecoderConfig, type DecoderDefaults, parseDecoderConfig, readQwenWindows } from '../shared/decoder-config.js';

export interface Qwen2Config extends DecoderConfig {
  readonly modelType: 'qwen2';
}

export const QWEN_DEFAULTS: DecoderDefaults = {
  vocabSize: 151936,
  hiddenSize: 4096,
  intermediateSize: 22016,
  numHiddenLayers: 32,
  numAttentionHeads: 32,
  maxPositionEmbeddings: 32768,
  rmsNormEps: 1e-6,
  tieWordEmbeddings: false,
};

export function parseQwen2Config(json: JsonObject, file = 'config.json'): Qwen2Config {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'qwen2', QWEN_DEFAULTS);
  return { ...base, ...readQwenWindows(f, base.numHiddenLayers), modelType: 'qwen2', qkvBias: true };
}

export class Qwen2ForCausalLM extends LlamaForCausalLM<Qwen2Config> {
  static override readonly typeName: string = 'Qwen2ForCausalLM';
  constructor(config: Qwen2Config, options: ModelOptions = {}) {
    super(config, options);
  }
}
