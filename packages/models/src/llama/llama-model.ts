/**
 * Llama as transformers' modeling_llama.py defines it, with the same module tree and parameter names
 * (`model.layers.0.self_attn.q_proj.weight`, …) so PEFT adapters address the same layers.
 */
import {
  defaultRandom,
  Embedding,
  type Layer,
  type LayerOptions,
  Linear,
  Module,
  ModuleList,
  ops,
  RMSNorm,
  type Tensor,
} from '@dorajs/core';
import { activationByName, type Activation } from '../shared/activations.js';
import { causalSelfAttention, splitHeads } from '../shared/attention.js';
import { CausalLM, type ModelOptions } from '../shared/causal-lm.js';
import { ForwardLayout } from '../shared/forward-layout.js';
import type { KVCacheSpec } from '../shared/kv-cache.js';
import { applyRope, ropeInverseFrequencies, ropeTables, type RopeTables } from '../shared/rope.js';
import type { LlamaConfig } from './llama-config.js';

/** Per-forward values every layer shares. */
interface LlamaContext {
  readonly rope: RopeTables;
  readonly layout: ForwardLayout;
}

export class LlamaAttention extends Module {
  q_proj: Layer;
  k_proj: Layer;
  v_proj: Layer;
  o_proj: Layer;
  private readonly _config: LlamaConfig;
  private readonly _options: LayerOptions;

  constructor(
    config: LlamaConfig,
    options: LayerOptions,
    /** This layer's slot in the KV cache. */
    readonly layerIdx = 0,
  ) {
    super();
    const { hiddenSize: h, numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d, attentionBias: bias } = config;
    this.q_proj = new Linear(h, heads * d, { ...options, bias });
    this.k_proj = new Linear(h, kv * d, { ...options, bias });
    this.v_proj = new Linear(h, kv * d, { ...options, bias });
    this.o_proj = new Linear(heads * d, h, { ...options, bias });
    this._config = config;
    this._options = options;
  }

  forward(x: Tensor, context: LlamaContext): Tensor {
    const { numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d, attentionDropout: p } = this._config;
    const q = applyRope(splitHeads(this.q_proj.forward(x), heads, d), context.rope);
    const k = applyRope(splitHeads(this.k_proj.forward(x), kv, d), context.rope);
    const cached = context.layout.keysAndValues(this.layerIdx, k, splitHeads(this.v_proj.forward(x), kv, d));
    const random = this._options.random ?? defaultRandom;
    const dropout =
      this.training && p > 0
        ? (probs: Tensor) =>
            ops.mul(
              probs,
              ops.dropoutMask(probs.shape, p, () => random.next(), probs),
            )
        : undefined;
    const out = causalSelfAttention({ q, ...cached, scale: d ** -0.5, mask: context.layout.mask(), dropout });
    return this.o_proj.forward(out);
  }
}

export class LlamaMLP extends Module {
  gate_proj: Layer;
  up_proj: Layer;
  down_proj: Layer;
  private readonly _act: Activation;

  constructor(config: LlamaConfig, options: LayerOptions) {
    super();
    const { hiddenSize: h, intermediateSize: i, mlpBias: bias } = config;
    this.gate_proj = new Linear(h, i, { ...options, bias });
    this.up_proj = new Linear(h, i, { ...options, bias });
    this.down_proj = new Linear(i, h, { ...options, bias });
    this._act = activationByName(config.hiddenAct);
  }

  forward(x: Tensor): Tensor {
    return this.down_proj.forward(ops.mul(this._act(this.gate_proj.forward(x)), this.up_proj.forward(x)));
  }
}

export class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: Layer;
  post_attention_layernorm: Layer;

  constructor(config: LlamaConfig, options: LayerOptions, layerIdx = 0) {
    super();
    this.self_attn = new LlamaAttention(config, options, layerIdx);
    this.mlp = new LlamaMLP(config, options);
    this.input_layernorm = new RMSNorm(config.hiddenSize, config.rmsNormEps, options);
    this.post_attention_layernorm = new RMSNorm(config.hiddenSize, config.rmsNormEps, options);
  }

  forward(x: Tensor, context: LlamaContext): Tensor {
    const h = ops.add(x, this.self_attn.forward(this.input_layernorm.forward(x), context));
    return ops.add(h, this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

/** The backbone: ids → final normalised hidden states [batch, seq, hidden]. */
export class LlamaModel extends Module {
  embed_tokens: Layer;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: Layer;
  private readonly _invFreq: Float32Array;

  constructor(config: LlamaConfig, options: LayerOptions) {
    super();
    this.embed_tokens = new Embedding(config.vocabSize, config.hiddenSize, options);
    this.layers = new ModuleList(Array.from({ length: config.numHiddenLayers }, (_, i) => new LlamaDecoderLayer(config, options, i)));
    this.norm = new RMSNorm(config.hiddenSize, config.rmsNormEps, options);
    this._invFreq = ropeInverseFrequencies(config.headDim, config.ropeTheta);
  }

  /** Hidden states for `ids`; `layout` (positions, mask, cache) defaults to a plain causal forward. */
  forward(ids: Tensor, layout?: ForwardLayout): Tensor {
    const own = layout ?? ForwardLayout.create(ids, {}, 'LlamaModel.forward');
    const rope = ropeTables(own.positionIds, own.positionRows, this._invFreq, ids.backend);
    try {
      let h = this.embed_tokens.forward(ids);
      for (const layer of this.layers) h = layer.forward(h, { rope, layout: own });
      return this.norm.forward(h);
    } finally {
      // Constants of this call; freed here so a forward outside tidy leaks nothing of its own.
      rope.cos.dispose();
      rope.sin.dispose();
      if (!layout) own.dispose();
    }
  }
}

export class LlamaForCausalLM extends CausalLM<LlamaConfig> {
  model: LlamaModel;
  lm_head: Layer;
  readonly config: LlamaConfig;

  constructor(config: LlamaConfig, options: ModelOptions = {}) {
    super();
    this.config = config;
    this.model = new LlamaModel(config, options);
    const head = new Linear(config.hiddenSize, config.vocabSize, { ...options, bias: false });
    if (config.tieWordEmbeddings) {
      head.weight.dispose();
      head.weight = (this.model.embed_tokens as Embedding).weight;
    }
    this.lm_head = head;
  }

  get cacheSpec(): KVCacheSpec {
    const { numHiddenLayers, numKeyValueHeads, headDim } = this.config;
    return { numLayers: numHiddenLayers, numKeyValueHeads, headDim };
  }

  get maxPositions(): number {
    return this.config.maxPositionEmbeddings;
  }

  protected hiddenStates(ids: Tensor, layout: ForwardLayout): Tensor {
    return this.model.forward(ids, layout);
  }
}
