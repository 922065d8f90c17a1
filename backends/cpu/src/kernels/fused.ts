/**
 * The fused DoRA kernels.
 *
 * weightNorm computes ‖W + s·B·A‖ per output feature without ever holding B·A: one output row (or, for
 * transposeW, one input row of the stored [in, out] W) of B·A at a time goes into a small float64
 * buffer, so the extra memory is O(in + out), never O(out·in).
 *
 * The sum of squares accumulates in float64 rather than float32 (or compensated float32). In JavaScript
 * float64 costs nothing extra, and it removes both failure modes of a float32 sum: squares of weights
 * above ~1.8e19 (or a long row of ~1e18 values) no longer overflow to Inf, squares below ~1e-23 no
 * longer flush to 0, and the accumulated rounding error (~in·2⁻⁵³ relative) stays far below the one
 * float32 rounding of the result. The result is the float32 rounding of the (near-exact) norm.
 */

/** W [out, in], A [r, in], B [out, r] → norms [out]. */
export function weightNormRows(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inF: number, r: number, scale: number, norms: Float32Array): void {
  const row = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    const bRow = o * r;
    let j = 0;
    // Four rows of A per pass over the buffer: a quarter of the buffer traffic.
    for (; j + 4 <= r; j += 4) {
      const b0 = b[bRow + j]!, b1 = b[bRow + j + 1]!, b2 = b[bRow + j + 2]!, b3 = b[bRow + j + 3]!;
      const a0 = j * inF, a1 = a0 + inF, a2 = a1 + inF, a3 = a2 + inF;
      for (let i = 0; i < inF; i++) row[i]! += b0 * a[a0 + i]! + b1 * a[a1 + i]! + b2 * a[a2 + i]! + b3 * a[a3 + i]!;
    }
    for (; j < r; j++) {
      const bj = b[bRow + j]!;
      const aj = j * inF;
      for (let i = 0; i < inF; i++) row[i]! += bj * a[aj + i]!;
    }
    const wRow = o * inF;
    let sumSq = 0;
    for (let i = 0; i < inF; i++) {
      const v = w[wRow + i]! + scale * row[i]!;
      sumSq += v * v;
    }
    norms[o] = Math.sqrt(sumSq);
  }
}

/**
 * W stored [in, out] (Conv1D, Embedding): the norm of each column of W + s·(B·A)ᵀ. Walks W in storage
 * order, one stored row (fixed input feature i) at a time, with column i of B·A = B·A[:, i] in a buffer.
 */
export function weightNormColumns(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inF: number, r: number, scale: number, norms: Float32Array): void {
  const bt = new Float64Array(r * out); // Bᵀ, so the inner loop is contiguous
  for (let o = 0; o < out; o++) for (let j = 0; j < r; j++) bt[j * out + o] = b[o * r + j]!;
  const col = new Float64Array(out);
  const sumSq = new Float64Array(out);
  for (let i = 0; i < inF; i++) {
    col.fill(0);
    for (let j = 0; j < r; j++) {
      const aji = a[j * inF + i]!;
      const bj = j * out;
      for (let o = 0; o < out; o++) col[o]! += aji * bt[bj + o]!;
    }
    const wRow = i * out;
    for (let o = 0; o < out; o++) {
      const v = w[wRow + o]! + scale * col[o]!;
      sumSq[o]! += v * v;
    }
  }
  for (let o = 0; o < out; o++) norms[o] = Math.sqrt(sumSq[o]!);
}

/** y = bias + g ⊙ (base + scale·lora), base and lora [rows, out], g and bias [out]; one rounding per element. */
export function doraComposeInto(base: Float32Array, lora: Float32Array, g: Float32Array, scale: number, bias: Float32Array | null, out: number, y: Float32Array): void {
  const rows = out === 0 ? 0 : base.length / out;
  for (let r = 0; r < rows; r++) {
    const o0 = r * out;
    if (bias) for (let o = 0; o < out; o++) y[o0 + o] = bias[o]! + g[o]! * (base[o0 + o]! + scale * lora[o0 + o]!);
    else for (let o = 0; o < out; o++) y[o0 + o] = g[o]! * (base[o0 + o]! + scale * lora[o0 + o]!);
  }
}
