/**
 * Gemma 2 as transformers' modeling_gemma2.py defines it: Llama's attention and MLP (GELU-tanh), with
 * embeddings scaled by √hidden_size, RMSNorm that multiplies by (1 + weight), a norm before and after
 * both attention and MLP, soft-capped attention scores and logits, query_pre_attn_scalar^−½ as the
 * attention scale, and sliding-window layers alternating with full ones.
 */
import { type LayerOptions, Layer, ops, Parameter, type Tensor, tidy, zeros } from '@dorajs/core';
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import {
  type DecoderAttention,
  type DecoderContext,
  DecoderLayer,
  type DecoderMLP,
  type DecoderParts,
  LlamaAttention,
  LlamaForCausalLM,
  LlamaMLP,
} from '../llama/llama-model.js';
import type { ModelOptions } from '../shared/causal-lm.js';
import { type DecoderConfig, parseDecoderConfig, readCap, readLayerTypes, readWindow } from '../shared/decoder-config.js';
import type { CausalLMForwardOptions } from '../shared/forward-layout.js';

export interface Gemma2Config extends DecoderConfig {
  readonly modelType: 'gemma2';
}

export function parseGemma2Config(json: JsonObject, file = 'config.json'): Gemma2Config {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'gemma2', {
    vocabSize: 256000,
    hiddenSize: 2304,
    intermediateSize: 9216,
    numHiddenLayers: 26,
    numAttentionHeads: 8,
    numKeyValueHeads: 4,
    headDim: 256,
    maxPositionEmbeddings: 8192,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: true,
    activationField: 'hidden_activation',
    activation: 'gelu_pytorch_tanh',
  });
  const bias = f.boolean('attention_bias', false);
  const scalar = f.number('query_pre_attn_scalar', 256);
  if (scalar <= 0) f.reject('query_pre_attn_scalar', `must be positive, got ${scalar}`);
  // Gemma2Config: even layers (0, 2, …) slide, odd layers attend to everything.
  const layout = readLayerTypes(f, base.numHiddenLayers, readWindow(f, 4096), (i) =>
    (i + 1) % 2 ? 'sliding_attention' : 'full_attention',
  );
  return {
    ...base,
    ...layout,
    modelType: 'gemma2',
    qkvBias: bias,
    oBias: bias,
    attentionScale: scalar ** -0.5,
    attnLogitSoftcapping: readCap(f, 'attn_logit_softcapping', 50),
    finalLogitSoftcapping: readCap(f, 'final_logit_softcapping', 30),
    gemmaNorms: true,
  };
}

/** Gemma's RMSNorm: x / rms(x) · (1 + weight), weight initialised to zeros. */
export class Gemma2RMSNorm extends Layer {
  static override readonly typeName: string = 'Gemma2RMSNorm';
  weight: Parameter;

  constructor(
    readonly hiddenSize: number,
    readonly eps = 1e-6,
    options: LayerOptions = {},
  ) {
    super();
    const init = zeros([hiddenSize], { backend: options.backend });
    this.weight = new Parameter(init);
    init.dispose();
  }

  forward(x: Tensor): Tensor {
    return tidy(() => ops.mul(ops.rmsNorm(x, null, this.eps), ops.addScalar(this.weight, 1)));
  }
}

export class Gemma2DecoderLayer extends DecoderLayer {
  static override readonly typeName: string = 'Gemma2DecoderLayer';
  self_attn: DecoderAttention;
  mlp: DecoderMLP;
  input_layernorm: Layer;
  post_attention_layernorm: Layer;
  pre_feedforward_layernorm: Layer;
  post_feedforward_layernorm: Layer;

  constructor(config: DecoderConfig, options: LayerOptions, layerIdx: number, parts: DecoderParts) {
    super();
    const norm = () => parts.norm(config.hiddenSize, config.rmsNormEps, options);
    this.self_attn = parts.attention(config, options, layerIdx);
    this.mlp = parts.mlp(config, options);
    this.input_layernorm = norm();
    this.post_attention_layernorm = norm();
    this.pre_feedforward_layernorm = norm();
    this.post_feedforward_layernorm = norm();
  }

  forward(x: Tensor, context: DecoderContext): Tensor {
    const attn = this.post_attention_layernorm.forward(this.self_attn.forward(this.input_layernorm.forward(x), context));
    const h = ops.add(x, attn);
    return ops.add(h, this.post_feedforward_layernorm.forward(this.mlp.forward(this.pre_feedforward_layernorm.forward(h))));
  }
}

const gemmaNorm = (size: number, eps: number, options: LayerOptions): Layer => new Gemma2RMSNorm(size, eps, options);

export const GEMMA2_PARTS: DecoderParts = {
  attention: (config, options, layerIdx) => new LlamaAttention(config, options, layerIdx, gemmaNorm),
  mlp: (config, options) => new LlamaMLP(config, options),
  layer: (config, options, layerIdx, parts) => new Gemma2DecoderLayer(config, options, layerIdx, parts),
  norm: gemmaNorm,
};

export class Gemma2ForCausalLM extends LlamaForCausalLM<Gemma2Config> {
  static override readonly typeName: string = 'Gemma2ForCausalLM';
  constructor(config: Gemma2Config, options: ModelOptions = {}) {
    super(config, options, GEMMA2_PARTS);
  }

  /** Logits soft-capped as Gemma2ForCausalLM does: cap·tanh(logits / cap). */
  override forward(ids: Tensor, options: CausalLMForwardOptions = {}): Tensor {
    const cap = this.config.finalLogitSoftcapping;
    if (cap === null) return super.forward(ids, options);
    return tidy(() => ops.mulScalar(ops.tanh(ops.mulScalar(super.forward(ids, options), 1 / cap)), cap));
  }
}
