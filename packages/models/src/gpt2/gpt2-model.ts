/**
 * GPT-2 as transformers' modeling_gpt2.py defines it: Conv1D projections stored [in, out], learned
 * position embeddings, pre-LayerNorm blocks, and an lm_head tied to `transformer.wte` unless the config
 * says otherwise. Module tree and parameter names match PyTorch so PEFT adapters apply unchanged.
 */
import {
  checkpoint,
  isGradEnabled,
  Conv1D,
  defaultRandom,
  Dropout,
  Embedding,
  type Layer,
  type LayerOptions,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  ops,
  type Tensor,
  tidy,
} from '@dorajs/core';
import { TokenIdsError } from '../errors.js';
import { activationByName, type Activation } from '../shared/activations.js';
import { causalSelfAttention, splitHeads } from '../shared/attention.js';
import { CausalLM, type ModelOptions } from '../shared/causal-lm.js';
import { ForwardLayout } from '../shared/forward-layout.js';
import type { KVCacheSpec } from '../shared/kv-cache.js';
import type { GPT2Config } from './gpt2-config.js';

const dropout = (p: number, options: LayerOptions): Dropout => new Dropout(p, options.random ?? defaultRandom);

export class GPT2Attention extends Module {
  static override readonly typeName: string = 'GPT2Attention';
  c_attn: Layer;
  c_proj: Layer;
  attn_dropout: Dropout;
  resid_dropout: Dropout;
  private readonly _heads: number;
  private readonly _headDim: number;
  private readonly _scale: number;

  constructor(
    config: GPT2Config,
    /** This layer's slot in the KV cache. */
    readonly layerIdx: number,
    options: LayerOptions,
  ) {
    super();
    const e = config.nEmbd;
    this.c_attn = new Conv1D(3 * e, e, options);
    this.c_proj = new Conv1D(e, e, options);
    this.attn_dropout = dropout(config.attnPdrop, options);
    this.resid_dropout = dropout(config.residPdrop, options);
    this._heads = config.nHead;
    this._headDim = e / config.nHead;
    // transformers divides by √headDim and then by (layer_idx + 1); one multiply is the same up to rounding.
    this._scale = (config.scaleAttnWeights ? this._headDim ** -0.5 : 1) / (config.scaleAttnByInverseLayerIdx ? layerIdx + 1 : 1);
  }

  forward(x: Tensor, layout: ForwardLayout): Tensor {
    const e = this._heads * this._headDim;
    const [q, k, v] = ops.split(this.c_attn.forward(x), [e, e, e], -1).map((t) => splitHeads(t, this._heads, this._headDim)) as [
      Tensor,
      Tensor,
      Tensor,
    ];
    const cached = layout.keysAndValues(this.layerIdx, k, v);
    const out = causalSelfAttention({
      q,
      ...cached,
      scale: this._scale,
      mask: layout.mask(),
      dropout: (p) => this.attn_dropout.forward(p),
    });
    return this.resid_dropout.forward(this.c_proj.forward(out));
  }
}

export class GPT2MLP extends Module {
  static override readonly typeName: string = 'GPT2MLP';
  c_fc: Layer;
  c_proj: Layer;
  dropout: Dropout;
  private readonly _act: Activation;

  constructor(config: GPT2Config, options: LayerOptions) {
    super();
    this.c_fc = new Conv1D(config.nInner, config.nEmbd, options);
    this.c_proj = new Conv1D(config.nEmbd, config.nInner, options);
    this.dropout = dropout(config.residPdrop, options);
    this._act = activationByName(config.activationFunction);
  }

  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(this._act(this.c_fc.forward(x))));
  }
}

export class GPT2Block extends Module {
  static override readonly typeName: string = 'GPT2Block';
  ln_1: Layer;
  attn: GPT2Attention;
  ln_2: Layer;
  mlp: GPT2MLP;

  constructor(config: GPT2Config, layerIdx: number, options: LayerOptions) {
    super();
    this.ln_1 = new LayerNorm(config.nEmbd, config.layerNormEpsilon, options);
    this.attn = new GPT2Attention(config, layerIdx, options);
    this.ln_2 = new LayerNorm(config.nEmbd, config.layerNormEpsilon, options);
    this.mlp = new GPT2MLP(config, options);
  }

  forward(x: Tensor, layout: ForwardLayout): Tensor {
    const h = ops.add(this.attn.forward(this.ln_1.forward(x), layout), x);
    return ops.add(h, this.mlp.forward(this.ln_2.forward(h)));
  }
}

/** The backbone: ids → final normalised hidden states [batch, seq, n_embd]. */
export class GPT2Model extends Module {
  static override readonly typeName: string = 'GPT2Model';
  /** Run each block under `checkpoint` while training (see `CausalLM.gradientCheckpointingEnable`). */
  gradientCheckpointing = false;
  wte: Layer;
  wpe: Layer;
  drop: Dropout;
  h: ModuleList<GPT2Block>;
  ln_f: Layer;
  private readonly _nPositions: number;

  constructor(config: GPT2Config, options: LayerOptions) {
    super();
    this.wte = new Embedding(config.vocabSize, config.nEmbd, options);
    this.wpe = new Embedding(config.nPositions, config.nEmbd, options);
    this.drop = dropout(config.embdPdrop, options);
    this.h = new ModuleList(Array.from({ length: config.nLayer }, (_, i) => new GPT2Block(config, i, options)));
    this.ln_f = new LayerNorm(config.nEmbd, config.layerNormEpsilon, options);
    this._nPositions = config.nPositions;
  }

  /** Hidden states for `ids`; `layout` (positions, mask, cache) defaults to a plain causal forward. */
  forward(ids: Tensor, layout?: ForwardLayout): Tensor {
    const own = layout ?? ForwardLayout.create(ids, {}, 'GPT2Model.forward');
    try {
      // Positions (never above the cache position) index the wpe table, which kernels read unchecked.
      const length = own.start + own.seq;
      if (length > this._nPositions) {
        throw new TokenIdsError(`sequence of ${length} tokens is longer than n_positions (${this._nPositions})`, 'GPT2Model.forward');
      }
      let x = this.drop.forward(ops.add(this.wte.forward(ids), this.wpe.forward(own.positions())));
      // One scope per block: only what backward saved outlives it (PyTorch frees the rest as it goes).
      // Gradient checkpointing: each block keeps its input for a recompute in backward.
      const ckpt = this.gradientCheckpointing && isGradEnabled() && !own.cache;
      for (const block of this.h) {
        const input = x;
        x = ckpt ? checkpoint((xi) => block.forward(xi, own), [input]) : tidy(() => block.forward(input, own));
      }
      return this.ln_f.forward(x);
    } finally {
      if (!layout) own.dispose();
    }
  }
}

export class GPT2LMHeadModel extends CausalLM<GPT2Config> {
  static override readonly typeName: string = 'GPT2LMHeadModel';
  transformer: GPT2Model;
  lm_head: Layer;
  readonly config: GPT2Config;

  constructor(config: GPT2Config, options: ModelOptions = {}) {
    super();
    this.config = config;
    this.transformer = new GPT2Model(config, options);
    const head = new Linear(config.nEmbd, config.vocabSize, { ...options, bias: false });
    if (config.tieWordEmbeddings) {
      head.weight.dispose();
      head.weight = (this.transformer.wte as Embedding).weight;
    }
    this.lm_head = head;
  }

  get cacheSpec(): KVCacheSpec {
    const { nLayer, nHead, nEmbd } = this.config;
    return { numLayers: nLayer, numKeyValueHeads: nHead, headDim: nEmbd / nHead };
  }

  get maxPositions(): number {
    return this.config.nPositions;
  }

  protected hiddenStates(ids: Tensor, layout: ForwardLayout): Tensor {
    return this.transformer.forward(ids, layout);
  }
}
