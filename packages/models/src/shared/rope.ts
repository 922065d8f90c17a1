/**
 * Rotary position embeddings as transformers' default RoPE computes them: inverse frequencies
 * θ^(−2i/d) in float32, angles position·freq, the table duplicated over both halves of the head
 * (`cat(freqs, freqs)`), and `x·cos + rotate_half(x)·sin` with rotate_half(x) = cat(−x₂, x₁).
 */
import { type Backend, ops, type Tensor, tensor } from '@dorajs/core';

export interface RopeTables {
  /** `[rows, 1, seq, headDim]`: broadcasts over the heads of `[batch, heads, seq, headDim]`. */
  readonly cos: Tensor;
  /** [rows, 1, seq, headDim] */
  readonly sin: Tensor;
}

/** float32 inverse frequencies for `headDim` (length headDim / 2). */
export function ropeInverseFrequencies(headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(half);
  // PyTorch: arange(0, d, 2).float() / d in float32, then base ** that in float32, then 1 / that.
  for (let i = 0; i < half; i++) out[i] = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
  return out;
}

/**
 * cos/sin tables for `positions` ([rows · seq] position ids, e.g. `ForwardLayout.positionIds`), created
 * in the caller's scope. `attentionScaling` multiplies both (transformers' `attention_scaling`: 1 for
 * default RoPE, other values for YaRN / LongRoPE).
 */
export function ropeTables(
  positions: ArrayLike<number>,
  rows: number,
  invFreq: Float32Array,
  backend: Backend,
  attentionScaling = 1,
): RopeTables {
  const half = invFreq.length;
  const dim = 2 * half;
  const n = positions.length;
  const cos = new Float32Array(n * dim);
  const sin = new Float32Array(n * dim);
  for (let t = 0; t < n; t++) {
    const p = positions[t]!;
    for (let i = 0; i < half; i++) {
      // float32 angle, as transformers' inv_freq @ position_ids in float32.
      const angle = Math.fround(p * invFreq[i]!);
      const c = Math.fround(Math.cos(angle)) * attentionScaling;
      const s = Math.fround(Math.sin(angle)) * attentionScaling;
      cos[t * dim + i] = c;
      cos[t * dim + half + i] = c;
      sin[t * dim + i] = s;
      sin[t * dim + half + i] = s;
    }
  }
  const shape = [rows, 1, n / rows, dim];
  return { cos: tensor(cos, shape, { backend }), sin: tensor(sin, shape, { backend }) };
}

/**
 * Applies RoPE to x [..., seq, headDim] (the tables broadcast over the leading axes). Tables narrower
 * than the head rotate its first dimensions and pass the rest through (partial rotary, as Phi-3).
 */
export function applyRope(x: Tensor, tables: RopeTables): Tensor {
  const head = x.shape[x.rank - 1]!;
  const dim = tables.cos.shape[tables.cos.rank - 1]!;
  if (dim < head) {
    const [rot, pass] = ops.split(x, [dim, head - dim], -1) as [Tensor, Tensor];
    return ops.concat([applyRope(rot, tables), pass], -1);
  }
  // [batch, heads, seq, d] with [rows, 1, seq, d] tables: core's rotary op (one fused kernel where the backend has it).
  if (x.rank === 4 && tables.cos.rank === 4) return ops.rotaryEmbedding(x, tables.cos, tables.sin);
  const [x1, x2] = ops.split(x, [dim / 2, dim / 2], -1) as [Tensor, Tensor];
  const rotated = ops.concat([ops.neg(x2), x1], -1);
  return ops.add(ops.mul(x, tables.cos), ops.mul(rotated, tables.sin));
}
