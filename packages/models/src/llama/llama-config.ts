/** LlamaConfig: the config.json fields LlamaForCausalLM honours, with transformers' defaults. */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { ModelConfigError, UnsupportedRopeError } from '../errors.js';
import { readActivation } from '../shared/activations.js';

export interface LlamaConfig {
  readonly modelType: 'llama';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly hiddenAct: string;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly tieWordEmbeddings: boolean;
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
  readonly attentionDropout: number;
  /** Positions the model was trained for; longer prompts are refused. */
  readonly maxPositionEmbeddings: number;
}

const DEFAULT_ROPE_THETA = 10000;

/** Parses a Llama config.json object; `file` names it in errors. */
export function parseLlamaConfig(json: JsonObject, file = 'config.json'): LlamaConfig {
  const f = new ConfigFields(json, file);
  const hiddenSize = f.size('hidden_size', 4096);
  const numAttentionHeads = f.size('num_attention_heads', 32);
  const numKeyValueHeads = f.size('num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    f.reject('num_key_value_heads', `(${numKeyValueHeads}) must divide num_attention_heads (${numAttentionHeads})`);
  }
  if (!f.has('head_dim') && hiddenSize % numAttentionHeads !== 0) {
    f.reject('hidden_size', `(${hiddenSize}) is not divisible by num_attention_heads (${numAttentionHeads}) and no head_dim is given`);
  }
  const headDim = f.size('head_dim', hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) f.reject('head_dim', `must be even for rotary embeddings, got ${headDim}`);
  return {
    modelType: 'llama',
    vocabSize: f.size('vocab_size', 32000),
    hiddenSize,
    intermediateSize: f.size('intermediate_size', 11008),
    numHiddenLayers: f.size('num_hidden_layers', 32),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    hiddenAct: readActivation(f, 'hidden_act', 'silu'),
    rmsNormEps: f.number('rms_norm_eps', 1e-6),
    ropeTheta: readRopeTheta(f),
    tieWordEmbeddings: f.boolean('tie_word_embeddings', false),
    attentionBias: f.boolean('attention_bias', false),
    mlpBias: f.boolean('mlp_bias', false),
    attentionDropout: f.probability('attention_dropout', 0),
    maxPositionEmbeddings: f.size('max_position_embeddings', 2048),
  };
}

/**
 * RoPE base frequency. transformers 5 writes `rope_parameters: { rope_type, rope_theta }`; older files
 * have a top-level `rope_theta` and an optional `rope_scaling` (whose type key was once `type`). Any
 * scaling variant changes the frequencies, so everything but 'default' is refused rather than ignored.
 */
function readRopeTheta(f: ConfigFields): number {
  const params = f.object('rope_parameters');
  const legacyScaling = f.object('rope_scaling');
  for (const [section, name] of [
    [params, 'rope_parameters'],
    [legacyScaling, 'rope_scaling'],
  ] as const) {
    if (!section) continue;
    const typeField = section.has('rope_type') ? 'rope_type' : section.has('type') ? 'type' : null;
    const ropeType = typeField ? section.string(typeField) : 'default';
    if (ropeType !== 'default') throw new UnsupportedRopeError(ropeType, f.file, `${name}.${typeField}`);
  }
  const theta = params?.has('rope_theta') ? params.number('rope_theta') : f.number('rope_theta', DEFAULT_ROPE_THETA);
  if (theta <= 0) throw new ModelConfigError(`must be positive, got ${theta}`, f.file, 'rope_theta');
  return theta;
}
