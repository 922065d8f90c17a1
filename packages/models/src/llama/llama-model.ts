/**
 * Llama as transformers' modeling_llama.py defines it, with the same module tree and parameter names
 * (`model.layers.0.self_attn.q_proj.weight`, …) so PEFT adapters address the same layers. The families
 * transformers derives from Llama (Qwen2/3, Mistral, Phi-3, Gemma 2) run on these classes too: their
 * config says which biases, norms, windows and caps apply, and a `DecoderParts` swaps in the modules
 * whose names differ (Phi-3's fused projections, Gemma 2's four norms per layer).
 */
import {
  checkpoint,
  isGradEnabled,
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
  tidy,
} from '@dorajs/core';
import { activationByName, type Activation } from '../shared/activations.js';
import { causalSelfAttention, splitHeads } from '../shared/attention.js';
import { CausalLM, type ModelOptions } from '../shared/causal-lm.js';
import type { DecoderConfig } from '../shared/decoder-config.js';
import { ForwardLayout } from '../shared/forward-layout.js';
import type { KVCacheSpec } from '../shared/kv-cache.js';
import { applyRope, ropeTables, type RopeTables } from '../shared/rope.js';
import { ropeDependsOnLength, ropeFrequencies, type RopeFrequencies } from '../shared/rope-scaling.js';
import type { LlamaConfig } from './llama-config.js';

/** Per-forward values every layer shares. */
export interface DecoderContext {
  readonly rope: RopeTables;
  readonly layout: ForwardLayout;
}

/** A module with Llama's MLP contract: [.., hidden] → [.., hidden]. */
export type DecoderMLP = Module & { forward(x: Tensor): Tensor };

/** The modules a family builds differently; everything else is Llama's. */
export interface DecoderParts {
  readonly attention: (config: DecoderConfig, options: LayerOptions, layerIdx: number) => DecoderAttention;
  readonly mlp: (config: DecoderConfig, options: LayerOptions) => DecoderMLP;
  readonly layer: (config: DecoderConfig, options: LayerOptions, layerIdx: number, parts: DecoderParts) => DecoderLayer;
  /** RMSNorm of width `size` (Gemma's scales by 1 + weight). */
  readonly norm: (size: number, eps: number, options: LayerOptions) => Layer;
}

/**
 * Attention shared by every family: project (the part that differs), RoPE, append to the cache, score
 * with the layer's window and soft-cap, project out.
 */
export abstract class DecoderAttention extends Module {
  static override readonly typeName: string = 'DecoderAttention';
  declare o_proj: Layer;
  protected readonly _config: DecoderConfig;
  private readonly _options: LayerOptions;
  private readonly _window: number | undefined;

  constructor(
    config: DecoderConfig,
    options: LayerOptions,
    /** This layer's slot in the KV cache. */
    readonly layerIdx: number,
  ) {
    super();
    this._config = config;
    this._options = options;
    const sliding = config.layerTypes[layerIdx] === 'sliding_attention';
    this._window = sliding ? config.slidingWindow! : undefined;
  }

  /** q [batch, heads, seq, headDim] and k, v [batch, kvHeads, seq, headDim], before RoPE. */
  protected abstract project(x: Tensor): [Tensor, Tensor, Tensor];

  forward(x: Tensor, context: DecoderContext): Tensor {
    const { attentionDropout: p, attentionScale, attnLogitSoftcapping } = this._config;
    const [q0, k0, v] = this.project(x);
    const q = applyRope(q0, context.rope);
    const kv = context.layout.keysAndValues(this.layerIdx, applyRope(k0, context.rope), v);
    const random = this._options.random ?? defaultRandom;
    const dropout =
      this.training && p > 0
        ? (probs: Tensor) =>
            ops.mul(
              probs,
              ops.dropoutMask(probs.shape, p, () => random.next(), probs),
            )
        : undefined;
    const mask = context.layout.mask({ slidingWindow: this._window });
    const out = causalSelfAttention({ q, ...kv, scale: attentionScale, mask, dropout, softcap: attnLogitSoftcapping ?? undefined });
    return this.o_proj.forward(out);
  }
}

export class LlamaAttention extends DecoderAttention {
  static override readonly typeName: string = 'LlamaAttention';
  q_proj: Layer;
  k_proj: Layer;
  v_proj: Layer;
  override o_proj: Layer;
  /** Qwen3: RMSNorm over each head's q and k before RoPE. */
  q_norm?: Layer;
  k_norm?: Layer;

  constructor(config: DecoderConfig, options: LayerOptions, layerIdx = 0, norm = rmsNorm) {
    super(config, options, layerIdx);
    const { hiddenSize: h, numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d, qkvBias, oBias } = config;
    this.q_proj = new Linear(h, heads * d, { ...options, bias: qkvBias });
    this.k_proj = new Linear(h, kv * d, { ...options, bias: qkvBias });
    this.v_proj = new Linear(h, kv * d, { ...options, bias: qkvBias });
    this.o_proj = new Linear(heads * d, h, { ...options, bias: oBias });
    if (config.qkNorm) {
      this.q_norm = norm(d, config.rmsNormEps, options);
      this.k_norm = norm(d, config.rmsNormEps, options);
    }
  }

  protected project(x: Tensor): [Tensor, Tensor, Tensor] {
    const { numAttentionHeads: heads, numKeyValueHeads: kv, headDim: d } = this._config;
    let q = splitHeads(this.q_proj.forward(x), heads, d);
    let k = splitHeads(this.k_proj.forward(x), kv, d);
    if (this.q_norm && this.k_norm) {
      q = this.q_norm.forward(q);
      k = this.k_norm.forward(k);
    }
    return [q, k, splitHeads(this.v_proj.forward(x), kv, d)];
  }
}

export class LlamaMLP extends Module {
  static override readonly typeName: string = 'LlamaMLP';
  gate_proj: Layer;
  up_proj: Layer;
  down_proj: Layer;
  private readonly _act: Activation;

  constructor(config: DecoderConfig, options: LayerOptions) {
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

/** One block of the stack: attention then MLP, each around a residual. */
export abstract class DecoderLayer extends Module {
  static override readonly typeName: string = 'DecoderLayer';
  abstract forward(x: Tensor, context: DecoderContext): Tensor;
}

export class LlamaDecoderLayer extends DecoderLayer {
  static override readonly typeName: string = 'LlamaDecoderLayer';
  self_attn: DecoderAttention;
  mlp: DecoderMLP;
  input_layernorm: Layer;
  post_attention_layernorm: Layer;

  constructor(config: DecoderConfig, options: LayerOptions, layerIdx = 0, parts: DecoderParts = LLAMA_PARTS) {
    super();
    this.self_attn = parts.attention(config, options, layerIdx);
    this.mlp = parts.mlp(config, options);
    this.input_layernorm = parts.norm(config.hiddenSize, config.rmsNormEps, options);
    this.post_attention_layernorm = parts.norm(config.hiddenSize, config.rmsNormEps, options);
  }

  forward(x: Tensor, context: DecoderContext): Tensor {
    const h = ops.add(x, this.self_attn.forward(this.input_layernorm.forward(x), context));
    return ops.add(h, this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

const rmsNorm = (size: number, eps: number, options: LayerOptions): Layer => new RMSNorm(size, eps, options);

export const LLAMA_PARTS: DecoderParts = {
  attention: (config, options, layerIdx) => new LlamaAttention(config, options, layerIdx),
  mlp: (config, options) => new LlamaMLP(config, options),
  layer: (config, options, layerIdx, parts) => new LlamaDecoderLayer(config, options, layerIdx, parts),
  norm: rmsNorm,
};

/** The backbone: ids → final normalised hidden states [batch, seq, hidden]. */
export class LlamaModel extends Module {
  static override readonly typeName: string = 'LlamaModel';
  /** Run each decoder layer under `checkpoint` while training (see `CausalLM.gradientCheckpointingEnable`). */
  gradientCheckpointing = false;
  embed_tokens: Layer;
  layers: ModuleList<DecoderLayer>;
  norm: Layer;
  private readonly _config: DecoderConfig;
  /** Frequencies of the length-independent RoPE types, computed once. */
  private readonly _fixed: RopeFrequencies | null;

  constructor(config: DecoderConfig, options: LayerOptions, parts: DecoderParts = LLAMA_PARTS) {
    super();
    this.embed_tokens = new Embedding(config.vocabSize, config.hiddenSize, options);
    this.layers = new ModuleList(Array.from({ length: config.numHiddenLayers }, (_, i) => parts.layer(config, options, i, parts)));
    this.norm = parts.norm(config.hiddenSize, config.rmsNormEps, options);
    this._config = config;
    this._fixed = ropeDependsOnLength(config.rope) ? null : ropeFrequencies(config.rope, 0);
  }

  /** Hidden states for `ids`; `layout` (positions, mask, cache) defaults to a plain causal forward. */
  forward(ids: Tensor, layout?: ForwardLayout): Tensor {
    const own = layout ?? ForwardLayout.create(ids, {}, 'LlamaModel.forward');
    // dynamic / longrope: the frequencies of the longest sequence this call reaches (transformers' dynamic_rope_update).
    const { invFreq, attentionScaling } =
      this._fixed ?? ropeFrequencies(this._config.rope, own.positionIds.reduce((a, b) => Math.max(a, b), 0) + 1);
    const rope = ropeTables(own.positionIds, own.positionRows, invFreq, ids.backend, attentionScaling);
    try {
      let h = this.embed_tokens.forward(ids);
      // Gemma: × √hidden_size, rounded to the activations' dtype as transformers' normalizer is.
      if (this._config.gemmaNorms) h = ops.mulScalar(h, Math.fround(Math.sqrt(this._config.hiddenSize)));
      // One scope per layer, as PyTorch frees a layer's temporaries: only what backward saved outlives it.
      // Gradient checkpointing: each layer keeps its input (and the rope tables) for a recompute in backward.
      const ckpt = this.gradientCheckpointing && isGradEnabled() && !own.cache;
      for (const layer of this.layers) {
        const x = h;
        h = ckpt
          ? checkpoint((xi, cos, sin) => layer.forward(xi, { rope: { cos, sin }, layout: own }), [x, rope.cos, rope.sin])
          : tidy(() => layer.forward(x, { rope, layout: own }));
      }
      return this.norm.forward(h);
    } finally {
      // Constants of this call; freed here so a forward outside tidy leaks nothing of its own.
      rope.cos.dispose();
      rope.sin.dispose();
      if (!layout) own.dispose();
    }
  }
}

/** Positions a decoder can address; dynamic NTK RoPE exists to run past max_position_embeddings (transformers sets no limit then). */
export function decoderMaxPositions(config: DecoderConfig): number {
  return config.rope.ropeType === 'dynamic' ? Number.POSITIVE_INFINITY : config.maxPositionEmbeddings;
}

export class LlamaForCausalLM<C extends DecoderConfig = LlamaConfig> extends CausalLM<C> {
  static override readonly typeName: string = 'LlamaForCausalLM';
  model: LlamaModel;
  lm_head: Layer;
  readonly config: C;

  constructor(config: C, options: ModelOptions = {}, parts: DecoderParts = LLAMA_PARTS) {
    super();
    this.config = config;
    this.model = new LlamaModel(config, options, parts);
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
    return decoderMaxPositions(this.config);
  }

  protected hiddenStates(ids: Tensor, layout: ForwardLayout): Tensor {
    return this.model.forward(ids, layout);
  }
}
