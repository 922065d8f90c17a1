/** GPT2Config: the config.json fields GPT2LMHeadModel honours, with transformers' defaults. */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { readActivation } from '../shared/activations.js';

export interface GPT2Config {
  readonly modelType: 'gpt2';
  readonly vocabSize: number;
  readonly nPositions: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  /** MLP width; config.json's `n_inner: null` means 4·n_embd. */
  readonly nInner: number;
  readonly activationFunction: string;
  readonly residPdrop: number;
  readonly embdPdrop: number;
  readonly attnPdrop: number;
  readonly layerNormEpsilon: number;
  readonly scaleAttnWeights: boolean;
  readonly scaleAttnByInverseLayerIdx: boolean;
  readonly tieWordEmbeddings: boolean;
}

/** Parses a GPT-2 config.json object; `file` names it in errors. */
export function parseGPT2Config(json: JsonObject, file = 'config.json'): GPT2Config {
  const f = new ConfigFields(json, file);
  const nEmbd = f.size('n_embd', 768);
  const nHead = f.size('n_head', 12);
  if (nEmbd % nHead !== 0) f.reject('n_embd', `(${nEmbd}) must be divisible by n_head (${nHead})`);
  if (f.boolean('add_cross_attention', false))
    f.reject('add_cross_attention', 'is true; cross-attention (encoder-decoder use) is not supported');
  return {
    modelType: 'gpt2',
    vocabSize: f.size('vocab_size', 50257),
    nPositions: f.size('n_positions', 1024),
    nEmbd,
    nLayer: f.size('n_layer', 12),
    nHead,
    nInner: f.has('n_inner') ? f.size('n_inner') : 4 * nEmbd,
    activationFunction: readActivation(f, 'activation_function', 'gelu_new'),
    residPdrop: f.probability('resid_pdrop', 0.1),
    embdPdrop: f.probability('embd_pdrop', 0.1),
    attnPdrop: f.probability('attn_pdrop', 0.1),
    layerNormEpsilon: f.number('layer_norm_epsilon', 1e-5),
    scaleAttnWeights: f.boolean('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: f.boolean('scale_attn_by_inverse_layer_idx', false),
    tieWordEmbeddings: f.boolean('tie_word_embeddings', true),
  };
}
