/** LlamaConfig: the config.json fields LlamaForCausalLM honours, with transformers' defaults. */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { type DecoderConfig, parseDecoderConfig } from '../shared/decoder-config.js';

export interface LlamaConfig extends DecoderConfig {
  readonly modelType: 'llama';
}

/** Parses a Llama config.json object; `file` names it in errors. */
export function parseLlamaConfig(json: JsonObject, file = 'config.json'): LlamaConfig {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'llama', {
    vocabSize: 32000,
    hiddenSize: 4096,
    intermediateSize: 11008,
    numHiddenLayers: 32,
    numAttentionHeads: 32,
    maxPositionEmbeddings: 2048,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: false,
  });
  const attentionBias = f.boolean('attention_bias', false);
  return { ...base, modelType: 'llama', qkvBias: attentionBias, oBias: attentionBias, mlpBias: f.boolean('mlp_bias', false) };
}
