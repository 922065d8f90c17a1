/** Mistral as transformers' modeling_mistral.py defines it: Llama without biases, every layer in one sliding window. */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { LlamaForCausalLM } from '../llama/llama-model.js';
import type { ModelOptions } from '../shared/causal-lm.js';
import { type DecoderConfig, parseDecoderConfig, readLayerTypes, readWindow } from '../shared/decoder-config.js';

export interface MistralConfig extends DecoderConfig {
  readonly modelType: 'mistral';
}

export function parseMistralConfig(json: JsonObject, file = 'config.json'): MistralConfig {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'mistral', {
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 14336,
    numHiddenLayers: 32,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    maxPositionEmbeddings: 4096 * 32,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: false,
  });
  const window = readWindow(f, 4096);
  const layout = readLayerTypes(f, base.numHiddenLayers, window, () => (window === null ? 'full_attention' : 'sliding_attention'));
  return { ...base, ...layout, modelType: 'mistral' };
}

export class MistralForCausalLM extends LlamaForCausalLM<MistralConfig> {
  static override readonly typeName: string = 'MistralForCausalLM';
  constructor(config: MistralConfig, options: ModelOptions = {}) {
    super(config, options);
  }
}
