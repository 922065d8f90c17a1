/**
 * What every model here is: ids [batch, seq] in, logits [batch, seq, vocab] out — with, for generation,
 * an optional KV cache, attention mask and `logitsToKeep` (see `ForwardLayout`). An architecture
 * implements `hiddenStates` (ids + layout → final hidden states) and names its head; `forward` here does
 * the rest, so every architecture handles caches, masks and head slicing the same way.
 */
import { type Backend, Layer, ops, type Random, type Tensor } from '@dorajs/core';
import { type CausalLMForwardOptions, ForwardLayout } from './forward-layout.js';
import { KVCache, type KVCacheSpec } from './kv-cache.js';
import { checkIdsTensor } from './token-ids.js';

export interface ModelOptions {
  /** Where parameters live; default: core's default backend. */
  readonly backend?: Backend;
  /** Initialisation and dropout randomness; default: core's seeded default generator. */
  readonly random?: Random;
}

/** The parsed config every architecture shares. */
export interface CausalLMConfig {
  readonly modelType: string;
  readonly vocabSize: number;
}

/** A backbone whose decoder layers can run under gradient checkpointing (see `CausalLM.gradientCheckpointingEnable`). */
export interface GradientCheckpointing {
  gradientCheckpointing: boolean;
}

const checkpointable = (m: unknown): m is GradientCheckpointing =>
  typeof (m as Partial<GradientCheckpointing>).gradientCheckpointing === 'boolean';

export abstract class CausalLM<C extends CausalLMConfig = CausalLMConfig> extends Layer {
  static override readonly typeName: string = 'CausalLM';

  /**
   * Gradient checkpointing (transformers' `gradient_checkpointing_enable()`, which PEFT's
   * `prepare_model_for_kbit_training` turns on for QLoRA/QDoRA): while autograd records and no KV cache is
   * written, each decoder layer keeps only its input for backward and runs again there — activation memory
   * of one layer instead of all of them, for one more forward per step. Results and gradients are
   * bit-identical to the plain step. Returns this.
   */
  gradientCheckpointingEnable(): this {
    return this.setGradientCheckpointing(true);
  }

  /** Turns gradient checkpointing off again. Returns this. */
  gradientCheckpointingDisable(): this {
    return this.setGradientCheckpointing(false);
  }

  /** Whether gradient checkpointing is on (transformers' `is_gradient_checkpointing`). */
  get isGradientCheckpointing(): boolean {
    return this.namedModules().some(([, m]) => checkpointable(m) && m.gradientCheckpointing);
  }

  private setGradientCheckpointing(flag: boolean): this {
    for (const [, m] of this.namedModules()) if (checkpointable(m)) m.gradientCheckpointing = flag;
    return this;
  }
  abstract readonly config: C;
  /** The output projection to the vocabulary (`lm_head`). */
  abstract readonly lm_head: Layer;
  /** What the KV cache holds per layer. */
  abstract get cacheSpec(): KVCacheSpec;
  /** Positions the model can address (`max_position_embeddings`, GPT-2's `n_positions`). */
  abstract get maxPositions(): number;

  /**
   * Final hidden states [batch, seq, hidden] for `ids`, positions and masks taken from `layout`; each
   * attention layer gets its keys/values through `layout.keysAndValues(layerIndex, k, v)`.
   */
  protected abstract hiddenStates(ids: Tensor, layout: ForwardLayout): Tensor;

  /**
   * Logits [batch, seq, vocab] (or [batch, logitsToKeep, vocab]) for int32 ids [batch, seq] (values are
   * trusted: see `tokenIds`). With `cache`, attends to its earlier positions and appends this call's.
   */
  override forward(ids: Tensor, options: CausalLMForwardOptions = {}): Tensor {
    checkIdsTensor(ids, `${this.typeName}.forward`);
    const layout = ForwardLayout.create(ids, options, `${this.typeName}.forward`);
    try {
      let h = this.hiddenStates(ids, layout);
      const keep = options.logitsToKeep;
      if (keep !== undefined && keep < layout.seq) {
        const [batch, seq, hidden] = h.shape as [number, number, number];
        h = ops.slice(h, [0, seq - keep, 0], [batch, keep, hidden]);
      }
      const logits = this.lm_head.forward(h);
      layout.commit();
      return logits;
    } finally {
      // Constants of this call; freed here so a forward outside tidy leaks nothing of its own.
      layout.dispose();
    }
  }

  /**
   * Whether generation must drop its cache and run the whole sequence again before feeding `added`
   * tokens after `past` cached ones. transformers' Phi-3 does so when a step first passes LongRoPE's
   * original context, so that every key is rotated with the long factors. Default: never.
   */
  needsCacheRebuild(_past: number, _added: number): boolean {
    return false;
  }

  /** A KV cache for `batch` rows of up to `capacity` positions, on the model's backend by default. */
  createCache(batch: number, capacity: number, backend: Backend = this.parameters()[0]!.backend): KVCache {
    return new KVCache({ ...this.cacheSpec, batch, capacity, backend });
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }
}
