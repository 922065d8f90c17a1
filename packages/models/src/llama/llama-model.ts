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
import { causalMask, causalSelfAttention, splitHeads } from '../shared/attention.js';
import { CausalLM, type ModelOptions } from '../shared/causal-lm.js';
import { applyRope, ropeInverseFrequencies, ropeTables, type RopeTables } from '../shared/rope.js';
import type { LlamaConfig } from './llama-config.js';

/** Per-forward tensors every layer shares. */
interface LlamaContext {
  readonly rope: RopeTables;
  readonly mask: Tensor;
}

export class LlamaAttention extends Module {
  q_proj: Layer;
  k_proj: Layer;
  v_proj: Layer;
  o_proj: Layer;
  private readonly _config: LlamaConfig;
  private readonly _options: LayerOptions;

  constructor(config: LlamaConfig, options: LayerOptions) {
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
    const v = splitHeads(this.v_proj.forward(x), kv, d);
    const random = this._options.random ?? defaultRandom;
    const dropout =
      this.training && p > 0
        ? (probs: Tensor) =>
            ops.mul(
              probs,
              ops.dropoutMask(probs.shape, p, () => random.next(), probs),
            )
        : undefined;
    const out = causalSelfAttention({ q, k, v, scale: d ** -0.5, mask: context.mask, dropout });
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

  constructor(config: LlamaConfig, options: LayerOptions) {
    super();
    this.self_attn = new LlamaAttention(config, options);
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
    this.layers = new ModuleList(Array.from({ length: config.numHiddenLayers }, () => new LlamaDecoderLayer(config, options)));
    this.norm = new RMSNorm(config.hiddenSize, config.rmsNormEps, options);
    this._invFreq = ropeInverseFrequencies(config.headDim, config.ropeTheta);
  }

  forward(ids: Tensor): Tensor {
    const seq = ids.shape[1]!;
    const context: LlamaContext = { rope: ropeTables(seq, this._invFreq, ids.backend), mask: causalMask(seq, ids.backend) };
    try {
      let h = this.embed_tokens.forward(ids);
      for (const layer of this.layers) h = layer.forward(h, context);
      return this.norm.forward(h);
    } finally {
      // Constants of this call; freed here so a forward outside tidy leaks nothing of its own.
      context.rope.cos.dispose();
      context.rope.sin.dispose();
      context.mask.dispose();
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

  forward(ids: Tensor): Tensor {
    this.checkIds(ids);
    return this.lm_head.forward(this.model.forward(ids));
  }
}
