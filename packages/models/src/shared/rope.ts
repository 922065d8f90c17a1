/**
 * Rotary position embeddings as transformers' default RoPE computes them: inverse frequencies
 * θ^(−2i/d) in float32, angles position·freq, the table duplicated over both halves of the head
 * (`cat(freqs, freqs)`), and `x·cos + rotate_half(x)·sin` with rotate_half(x) = cat(−x₂, x₁).
 */
import { type Backend, ops, type Tensor, tensor } from '@dorajs/core';

export interface RopeTables {
  /** [seq, headDim] */
  readonly cos: Tensor;
  /** [seq, headDim] */
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

/** cos/sin tables for positions 0 … seq−1 (created in the caller's scope). */
export function ropeTables(seq: number, invFreq: Float32Array, backend: Backend): RopeTables {
  const half = invFreq.length;
  const dim = 2 * half;
  const cos = new Float32Array(seq * dim);
  const sin = new Float32Array(seq * dim);
  for (let p = 0; p < seq; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * invFreq[i]!);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * dim + i] = c;
      cos[p * dim + half + i] = c;
      sin[p * dim + i] = s;
      sin[p * dim + half + i] = s;
    }
  }
  return { cos: tensor(cos, [seq, dim], { backend }), sin: tensor(sin, [seq, dim], { backend }) };
}

/** Applies RoPE to x [..., seq, headDim] (the tables broadcast over the leading axes). */
export function applyRope(x: Tensor, tables: RopeTables): Tensor {
  const dim = x.shape[x.rank - 1]!;
  const [x1, x2] = ops.split(x, [dim / 2, dim / 2], -1) as [Tensor, Tensor];
  const rotated = ops.concat([ops.neg(x2), x1], -1);
  return ops.add(ops.mul(x, tables.cos), ops.mul(rotated, tables.sin));
}
