/**
 * The fused DoRA kernels.
 *
 * weightNorm computes ‖W + s·B·A‖ per output feature without ever holding B·A: a block of 32 rows of
 * B·A (32 input-feature rows of (B·A)ᵀ for transposeW) at a time is formed by the GEMM into a small
 * buffer and consumed at once, so the extra memory is 32·max(in, out) floats, never out·in.
 *
 * The sum of squares accumulates in float64 rather than float32 (or compensated float32). In JavaScript
 * float64 costs nothing extra, and it removes both failure modes of a float32 sum: squares of weights
 * above ~1.8e19 (or a long row of ~1e18 values) no longer overflow to Inf, squares below ~1e-23 no
 * longer flush to 0, and the accumulated rounding error (~in·2⁻⁵³ relative) stays far below the one
 * float32 rounding of the result. B·A itself is rounded to float32 once, as the composite does.
 */
import { gemm } from './gemm.js';

/** Rows of B·A formed per GEMM call: enough to amortise packing A, small enough to stay in L2. */
const BLOCK = 32;

/** W [out, in], A [r, in], B [out, r] → norms [out]. */
export function weightNormRows(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inF: number,
  r: number,
  scale: number,
  norms: Float32Array,
): void {
  const block = Math.min(BLOCK, out);
  const ba = new Float32Array(block * inF);
  for (let o0 = 0; o0 < out; o0 += block) {
    const rows = Math.min(block, out - o0);
    gemm(
      rows,
      inF,
      r,
      { data: b, offset: o0 * r, rowStride: r, colStride: 1 },
      { data: a, offset: 0, rowStride: inF, colStride: 1 },
      ba,
      0,
      inF,
      false,
    );
    for (let i = 0; i < rows; i++) {
      const wRow = (o0 + i) * inF;
      const t = i * inF;
      let sumSq = 0;
      for (let k = 0; k < inF; k++) {
        const v = w[wRow + k]! + scale * ba[t + k]!;
        sumSq += v * v;
      }
      norms[o0 + i] = Math.sqrt(sumSq);
    }
  }
}

/**
 * W stored [in, out] (Conv1D, Embedding): the norm of each column of W + s·(B·A)ᵀ. Walks W in storage
 * order, a block of stored rows (input features) at a time, with the matching rows of (B·A)ᵀ = Aᵀ·Bᵀ.
 */
export function weightNormColumns(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inF: number,
  r: number,
  scale: number,
  norms: Float32Array,
): void {
  const block = Math.min(BLOCK, inF);
  const baT = new Float32Array(block * out);
  const sumSq = new Float64Array(out);
  for (let i0 = 0; i0 < inF; i0 += block) {
    const rows = Math.min(block, inF - i0);
    // Aᵀ[i, j] = a[j·in + i] and Bᵀ[j, o] = b[o·r + j]: both are strided views, no copies.
    gemm(
      rows,
      out,
      r,
      { data: a, offset: i0, rowStride: 1, colStride: inF },
      { data: b, offset: 0, rowStride: 1, colStride: r },
      baT,
      0,
      out,
      false,
    );
    for (let i = 0; i < rows; i++) {
      const wRow = (i0 + i) * out;
      const t = i * out;
      for (let o = 0; o < out; o++) {
        const v = w[wRow + o]! + scale * baT[t + o]!;
        sumSq[o]! += v * v;
      }
    }
  }
  for (let o = 0; o < out; o++) norms[o] = Math.sqrt(sumSq[o]!);
}

/**
 * One output feature of each layout, in float64 throughout (B·A too): the wasm kernels' fallback for the
 * few norms whose float32 squares may have overflowed or underflowed.
 */
export function weightNormOne(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inF: number,
  r: number,
  scale: number,
  transposeW: boolean,
  o: number,
): number {
  let sumSq = 0;
  for (let i = 0; i < inF; i++) {
    let ba = 0;
    for (let k = 0; k < r; k++) ba += b[o * r + k]! * a[k * inF + i]!;
    const v = w[transposeW ? i * out + o : o * inF + i]! + scale * Math.fround(ba);
    sumSq += v * v;
  }
  return Math.sqrt(sumSq);
}

/** y = bias + g ⊙ (base + scale·lora), base and lora [rows, out], g and bias [out]; one rounding per element. */
export function doraComposeInto(
  base: Float32Array,
  lora: Float32Array,
  g: Float32Array,
  scale: number,
  bias: Float32Array | null,
  out: number,
  y: Float32Array,
): void {
  const rows = out === 0 ? 0 : base.length / out;
  for (let r = 0; r < rows; r++) {
    const o0 = r * out;
    if (bias) for (let o = 0; o < out; o++) y[o0 + o] = bias[o]! + g[o]! * (base[o0 + o]! + scale * lora[o0 + o]!);
    else for (let o = 0; o < out; o++) y[o0 + o] = g[o]! * (base[o0 + o]! + scale * lora[o0 + o]!);
  }
}

/**
 * RMSNorm of each row of n: x · rsqrt(mean(x²) + eps) (· weight). The same roundings as the JavaScript
 * composite (squares rounded to float32 and summed in float64, mean, + eps and rsqrt each rounded to
 * float32, then the two products), in one pass over the row for the sum and one for the output.
 */
export function rmsNormInto(x: Float32Array, weight: Float32Array | null, n: number, eps: number, out: Float32Array): void {
  const rows = n === 0 ? 0 : x.length / n;
  const inv = 1 / n;
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const v = x[base + i]!;
      s += Math.fround(v * v);
    }
    const variance = Math.fround(Math.fround(s * inv) + eps);
    const scale = Math.fround(1 / Math.sqrt(variance));
    if (weight) for (let i = 0; i < n; i++) out[base + i] = weight[i]! * Math.fround(x[base + i]! * scale);
    else for (let i = 0; i < n; i++) out[base + i] = x[base + i]! * scale;
  }
}

/**
 * Rotary embedding x·cos + cat(−x₂, x₁)·sin for x [batch, heads, seq, d] and tables [rows, 1, seq, d]
 * (rows 1 or batch), each product and the sum rounded to float32 as the composite's mul, mul, add.
 */
export function rotaryInto(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  shape: readonly number[],
  rows: number,
  out: Float32Array,
): void {
  const [batch, heads, seq, d] = shape as [number, number, number, number];
  const half = d / 2;
  for (let b = 0; b < batch; b++) {
    const table = (rows === 1 ? 0 : b) * seq * d;
    for (let h = 0; h < heads; h++) {
      for (let s = 0; s < seq; s++) {
        const at = ((b * heads + h) * seq + s) * d;
        const t = table + s * d;
        for (let j = 0; j < half; j++) {
          out[at + j] = Math.fround(x[at + j]! * cos[t + j]!) + Math.fround(-x[at + half + j]! * sin[t + j]!);
          out[at + half + j] = Math.fround(x[at + half + j]! * cos[t + half + j]!) + Math.fround(x[at + j]! * sin[t + half + j]!);
        }
      }
    }
  }
}
