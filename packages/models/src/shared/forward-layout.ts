/**
 * What one forward call of a causal LM needs besides its weights: where its tokens sit (position ids),
 * which keys each query may see (the additive mask), and where keys/values come from (this call only, or
 * a `KVCache` it appends to). Built on the host from the ids' shape and the host-side attention mask, so
 * a step never reads device values back.
 *
 * Positions follow transformers' generate: `cumsum(attention_mask) − 1`, with padding positions set to 1,
 * so a left-padded prompt gets the same positions — and, masked, the same logits — as the prompt alone.
 */
import { type Backend, keep, ops, reusedInRecompute, saveForRecompute, type Tensor, tensor } from '@dorajs/core';
import { GenerationError } from '../errors.js';
import type { KVCache } from './kv-cache.js';

/** torch.finfo(torch.float32).min, what transformers adds at masked positions. */
export const MASKED = -3.4028234663852886e38;

/** The options every `CausalLM.forward` takes after the ids. */
export interface CausalLMForwardOptions {
  /** Attend to the cache's earlier positions and append this call's keys/values to it (generation). */
  readonly cache?: KVCache;
  /**
   * [batch · seq], row-major: 1 for a token, 0 for padding, for this call's ids only (with a cache, the
   * mask of earlier positions is the cache's). Default: every id is a token.
   */
  readonly attentionMask?: ArrayLike<number>;
  /** Compute logits for the last `n` positions only (transformers' `logits_to_keep`); default all. */
  readonly logitsToKeep?: number;
}

export interface MaskOptions {
  /** Keys at least this many positions behind the query are masked (Mistral, Gemma 2). */
  readonly slidingWindow?: number;
}

/** Granularity of the attended prefix of a cache (see `ForwardLayout.keys`). */
export const KEY_BLOCK = 256;

/**
 * Keys to score with `filled` cache positions (this call's included): a multiple of KEY_BLOCK while that is
 * at most half the capacity (copying that prefix costs less than scoring the rest), else the capacity.
 * Positions past `filled` are masked for every query, so leaving them out changes no probability.
 */
export function attendedKeys(filled: number, capacity: number): number {
  const prefix = Math.ceil(filled / KEY_BLOCK) * KEY_BLOCK;
  return 2 * prefix <= capacity ? prefix : capacity;
}

export class ForwardLayout {
  /** Rows of `positionIds`: 1 when every row has the same positions (no padding), else batch. */
  readonly positionRows: number;
  /** [positionRows · seq] position of each query token. */
  readonly positionIds: Int32Array;
  /** Cache position of this call's first token (0 without a cache). */
  readonly start: number;
  /**
   * Keys each query is scored against: this call's length without a cache; with one, the cache's capacity
   * — or, while the filled positions take at most half of it, those positions rounded up to a multiple of
   * KEY_BLOCK (a long generation's early steps score ~100 keys, not every preallocated one).
   */
  readonly keys: number;
  /** Row length of the key mask (the cache's capacity, or this call's length). */
  private readonly _stride: number;
  private readonly _keyMask: Uint8Array | null;
  private readonly _masks = new Map<number, Tensor>();
  private _positions: Tensor | null = null;

  private constructor(
    readonly batch: number,
    readonly seq: number,
    readonly cache: KVCache | null,
    attentionMask: ArrayLike<number> | undefined,
    readonly backend: Backend,
  ) {
    this.start = cache?.length ?? 0;
    this._stride = cache ? cache.capacity : seq;
    this.keys = cache ? attendedKeys(this.start + seq, cache.capacity) : seq;
    if (!cache && attentionMask === undefined) {
      this.positionRows = 1;
      this.positionIds = Int32Array.from({ length: seq }, (_, i) => i);
      this._keyMask = null;
      return;
    }
    this.positionRows = batch;
    this.positionIds = new Int32Array(batch * seq);
    const keyMask = cache ? cache.keyMask : new Uint8Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      let real = 0;
      for (let j = 0; j < this.start; j++) real += keyMask[b * this._stride + j]!;
      for (let i = 0; i < seq; i++) {
        const token = attentionMask === undefined ? 1 : attentionMask[b * seq + i]!;
        keyMask[b * this._stride + this.start + i] = token;
        this.positionIds[b * seq + i] = token ? real++ : 1;
      }
    }
    this._keyMask = keyMask;
  }

  /**
   * Validates the call (before any work) and lays it out. `ids` is [batch, seq]; `source` names the
   * caller in errors.
   */
  static create(ids: Tensor, options: CausalLMForwardOptions, source: string): ForwardLayout {
    const [batch, seq] = ids.shape as [number, number];
    const { cache, attentionMask, logitsToKeep } = options;
    if (attentionMask !== undefined) {
      if (attentionMask.length !== batch * seq) {
        throw new GenerationError(`${source}: attentionMask has ${attentionMask.length} values for ids [${batch}, ${seq}]`);
      }
      for (let i = 0; i < attentionMask.length; i++) {
        const v = attentionMask[i];
        if (v !== 0 && v !== 1) throw new GenerationError(`${source}: attentionMask[${i}] is ${v}; it must be 0 or 1`);
      }
    }
    if (logitsToKeep !== undefined && (!Number.isInteger(logitsToKeep) || logitsToKeep < 1 || logitsToKeep > seq)) {
      throw new GenerationError(`${source}: logitsToKeep must be an integer in [1, ${seq}], got ${logitsToKeep}`);
    }
    if (cache) {
      if (cache.batch !== batch) throw new GenerationError(`${source}: ids have batch ${batch}, the KV cache ${cache.batch}`);
      if (cache.length + seq > cache.capacity) {
        throw new GenerationError(`${source}: ${seq} more positions do not fit the KV cache (${cache.length} of ${cache.capacity} used)`);
      }
    }
    return new ForwardLayout(batch, seq, cache ?? null, attentionMask, ids.backend);
  }

  /** Position ids as int32 [positionRows, seq] on the backend (owned by the layout). */
  positions(): Tensor {
    // Owned by the layout (freed by dispose), so a caller's tidy — one per decoder layer — leaves it alone.
    this._positions ??= keep(tensor(this.positionIds, [this.positionRows, this.seq], { backend: this.backend, dtype: 'int32' }));
    return this._positions;
  }

  /**
   * The additive attention mask (0 where a query may see a key, float32's minimum elsewhere): [seq, keys]
   * when no row has padding, else [batch, 1, 1, seq, keys]. Both broadcast over the scores of
   * `causalSelfAttention`. Built once per call and window; owned by the layout.
   */
  mask(options: MaskOptions = {}): Tensor {
    const window = options.slidingWindow ?? 0;
    // A checkpointed layer's recompute runs in backward, after this call disposed its masks: the forward
    // hands the mask it used to the recompute.
    const deps = ['ForwardLayout.mask', this, window];
    const reused = reusedInRecompute(deps);
    if (reused) return reused;
    let mask = this._masks.get(window);
    if (mask) {
      saveForRecompute(deps, mask);
      return mask;
    }
    const { seq, keys, start } = this;
    const rows = this._keyMask ? this.batch : 1;
    const values = new Float32Array(rows * seq * keys);
    for (let b = 0; b < rows; b++) {
      for (let i = 0; i < seq; i++) {
        const q = start + i;
        const row = (b * seq + i) * keys;
        for (let j = 0; j < keys; j++) {
          const visible = j <= q && (window <= 0 || q - j < window) && (!this._keyMask || this._keyMask[b * this._stride + j] === 1);
          if (!visible) values[row + j] = MASKED;
        }
      }
    }
    mask = keep(tensor(values, this._keyMask ? [rows, 1, 1, seq, keys] : [seq, keys], { backend: this.backend }));
    this._masks.set(window, mask);
    saveForRecompute(deps, mask);
    return mask;
  }

  /**
   * The keys and values layer `layer` attends to: this call's `k`/`v` [batch, kvHeads, seq, headDim], or,
   * with a cache, the cache's buffers [batch, kvHeads, capacity, headDim] after writing them in (their first
   * `keys` positions, copied, when that is fewer).
   */
  keysAndValues(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    if (!this.cache) return { k, v };
    const { key, value } = this.cache.layer(layer);
    ops.writeSlice(key, k, 2, this.start);
    ops.writeSlice(value, v, 2, this.start);
    if (this.keys === this.cache.capacity) return { k: key, v: value };
    const [batch, kvHeads, , headDim] = key.shape as [number, number, number, number];
    const size = [batch, kvHeads, this.keys, headDim];
    return { k: ops.slice(key, [0, 0, 0, 0], size), v: ops.slice(value, [0, 0, 0, 0], size) };
  }

  /** Marks this call's positions as filled in the cache; call once every layer has written. */
  commit(): void {
    if (this.cache) this.cache.length = this.start + this.seq;
  }

  /** Frees the layout's tensors (positions, masks). */
  dispose(): void {
    this._positions?.dispose();
    for (const m of this._masks.values()) m.dispose();
    this._masks.clear();
  }
}
