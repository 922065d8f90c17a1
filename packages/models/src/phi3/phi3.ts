/**
 * Phi-3 as transformers' modeling_phi3.py defines it: Llama with q/k/v fused into one `qkv_proj` and the
 * MLP's gate and up fused into `gate_up_proj` (so PEFT adapters target the fused modules), LongRoPE with
 * short and long factors, optional partial rotary embeddings and an optional sliding window on every layer.
 */
import { type Layer, type LayerOptions, Linear, Module, ops, type Tensor } from '@dorajs/core';
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { DecoderAttention, type DecoderParts, LLAMA_PARTS, LlamaForCausalLM } from '../llama/llama-model.js';
import { activationByName, type Activation } from '../shared/activations.js';
import { splitHeads } from '../shared/attention.js';
import type { ModelOptions } from '../shared/causal-lm.js';
import { type DecoderConfig, parseDecoderConfig, readLayerTypes, readWindow } from '../shared/decoder-config.js';

export interface Phi3Config extends DecoderConfig {
  readonly modelType: 'phi3';
}

export function parsePhi3Config(json: JsonObject, file = 'config.json'): Phi3Config {
  const f = new ConfigFields(json, file);
  const base = parseDecoderConfig(f, 'phi3', {
    vocabSize: 32064,
    hiddenSize: 3072,
    intermediateSize: 8192,
    numHiddenLayers: 32,
    numAttentionHeads: 32,
    maxPositionEmbeddings: 4096,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    partialRotary: true,
    topLevelOriginal: 4096,
  });
  const window = readWindow(f, null);
  return {
    ...base,
    ...readLayerTypes(f, base.numHiddenLayers, window, () => (window === null ? 'full_attention' : 'sliding_attention')),
    modelType: 'phi3',
  };
}

export class Phi3Attention extends DecoderAttention {
  static override readonly typeName: string = 'Phi3Attention';
  qkv_proj: Layer;
  override o_proj: Layer;

  constructor(config: DecoderConfig, options: LayerOptions, layerIdx = 0) {
    super(config, options, layerIdx);
    const { hiddenSize: h, numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d } = config;
    this.qkv_proj = new Linear(h, (heads + 2 * kv) * d, { ...options, bias: false });
    this.o_proj = new Linear(heads * d, h, { ...options, bias: false });
  }

  protected project(x: Tensor): [Tensor, Tensor, Tensor] {
    const { numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d } = this._config;
    const [q, k, v] = ops.split(this.qkv_proj.forward(x), [heads * d, kv * d, kv * d], -1) as [Tensor, Tensor, Tensor];
    return [splitHeads(q, heads, d), splitHeads(k, kv, d), splitHeads(v, kv, d)];
  }
}

export class Phi3MLP extends Module {
  static override readonly typeName: string = 'Phi3MLP';
  gate_up_proj: Layer;
  down_proj: Layer;
  private readonly _act: Activation;
  private readonly _inter: number;

  constructor(config: DecoderConfig, options: LayerOptions) {
    super();
    const { hiddenSize: h, intermediateSize: i } = config;
    this.gate_up_proj = new Linear(h, 2 * i, { ...options, bias: false });
    this.down_proj = new Linear(i, h, { ...options, bias: false });
    this._act = activationByName(config.hiddenAct);
    this._inter = i;
  }

  forward(x: Tensor): Tensor {
    // chunk(2): gate first, then up.
    const [gate, up] = ops.split(this.gate_up_proj.forward(x), [this._inter, this._inter], -1) as [Tensor, Tensor];
    return this.down_proj.forward(ops.mul(up, this._act(gate)));
  }
}

export const PHI3_PARTS: DecoderParts = {
  ...LLAMA_PARTS,
  attention: (config, options, layerIdx) => new Phi3Attention(config, options, layerIdx),
  mlp: (config, options) => new Phi3MLP(config, options),
};

export class Phi3ForCausalLM extends LlamaForCausalLM<Phi3Config> {
  static override readonly typeName: string = 'Phi3ForCausalLM';
  constructor(config: Phi3Config, options: ModelOptions = {}) {
    super(config, options, PHI3_PARTS);
  }

  /**
   * transformers' Phi3ForCausalLM.prepare_inputs_for_generation drops the cache the first time a step
   * starts at original_max_position_embeddings, so the whole sequence runs again with LongRoPE's long
   * factors (keys rotated with the short ones would otherwise stay in the cache).
   */
  override needsCacheRebuild(past: number, added: number): boolean {
    const original = this.config.rope.originalMaxPositionEmbeddings;
    return this.config.rope.ropeType === 'longrope' && past > 0 && past <= original && past + added > original;
  }
}
