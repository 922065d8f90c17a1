/**
 * Causal self-attention as transformers' eager path computes it: scores = q·kᵀ·scale, plus an additive
 * mask holding float32's lowest value where a key is hidden (see `ForwardLayout.mask`), softmax in
 * float32, then ·v. Grouped-query attention broadcasts each key/value head over its group of query heads
 * instead of copying it. Keys may outnumber queries (a KV cache holds earlier positions).
 */
import { ops, type Tensor } from '@dorajs/core';

export interface AttentionInputs {
  /** [batch, heads, seq, headDim] */
  readonly q: Tensor;
  /** [batch, kvHeads, keys, headDim], kvHeads dividing heads */
  readonly k: Tensor;
  /** [batch, kvHeads, keys, headDim] */
  readonly v: Tensor;
  /** Multiplies the scores before masking (1/√headDim, possibly more). */
  readonly scale: number;
  /** [seq, keys] or [batch, 1, 1, seq, keys], from `ForwardLayout.mask`. */
  readonly mask: Tensor;
  /** Applied to the attention probabilities (dropout in train mode). */
  readonly dropout?: (probs: Tensor) => Tensor;
  /** Gemma 2's soft-capping: scaled scores ← cap·tanh(scores / cap), before the mask. */
  readonly softcap?: number;
}

/** Returns the attention output [batch, seq, heads·headDim], heads concatenated as PyTorch does. */
export function causalSelfAttention({ q, k, v, scale, mask, dropout, softcap }: AttentionInputs): Tensor {
  const [batch, heads, seq, headDim] = q.shape as [number, number, number, number];
  const [kvHeads, keys] = [k.shape[1]!, k.shape[2]!];
  const group = heads / kvHeads;
  // [b, kvh, group, s, d] against [b, kvh, 1, keys, d]: matmul broadcasts the group axis.
  const qg = ops.reshape(q, [batch, kvHeads, group, seq, headDim]);
  const kg = ops.reshape(k, [batch, kvHeads, 1, keys, headDim]);
  const vg = ops.reshape(v, [batch, kvHeads, 1, keys, headDim]);
  let scores = ops.mulScalar(ops.matmul(qg, kg, { transposeB: true }), scale);
  if (softcap !== undefined) scores = ops.mulScalar(ops.tanh(ops.mulScalar(scores, 1 / softcap)), softcap);
  scores = ops.add(scores, mask);
  let probs = ops.softmax(scores);
  if (dropout) probs = dropout(probs);
  const out = ops.reshape(ops.matmul(probs, vg), [batch, heads, seq, headDim]);
  return ops.reshape(ops.transpose(out, [0, 2, 1, 3]), [batch, seq, heads * headDim]);
}

/** [batch, seq, heads·headDim] → [batch, heads, seq, headDim]. */
export function splitHeads(x: Tensor, heads: number, headDim: number): Tensor {
  const [batch, seq] = x.shape as [number, number];
  return ops.transpose(ops.reshape(x, [batch, seq, heads, headDim]), [0, 2, 1, 3]);
}
