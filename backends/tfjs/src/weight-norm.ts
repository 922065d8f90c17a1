/**
 * DoRA's weight norm ‖W + scale·B·A‖ per output feature.
 *
 * tfjs cannot fuse the sum into the GEMM, so B·A is materialised — inside one tidy scope, so the temporary
 * lives only for the kernel. Cheaper than core's composite all the same: the scale is folded into the small
 * B instead of a pass over the product, W [in, out] is never transposed, and (W + sBA)² is one
 * squaredDifference(W, −sBA) pass. (The Gram expansion ‖W‖² + 2s⟨B, WAᵀ⟩ + s²⟨BG, B⟩ avoids the temporary
 * but measured 6× slower on tfjs-wasm, whose skinny W·Aᵀ GEMM is slow, and cancels badly when W ≈ −sBA.)
 *
 * Squares of entries below ~1e-19 underflow float32 (and above ~1e19 overflow), so such rows come out 0 or
 * ∞. When the result can be read cheaply (the tensors live on the host), rows that look like that trigger
 * a recomputation with each row scaled by its largest entry first: two more passes, paid only then.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Norms below this may have lost precision to float32 underflow of the squares. */
const UNDERFLOW_SUSPECT = 1e-15;

/** W [out, in] (or [in, out] when transposeW), A [r, in], B [out, r] → [out]. */
export function weightNorm(w: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number, transposeW: boolean, onHost: boolean): tf.Tensor {
  const negUpdate = update(a, b, -scale, transposeW);
  const axis = transposeW ? 0 : 1;
  const norm = tf.sqrt(tf.sum(tf.squaredDifference(w, negUpdate), axis));
  if (!onHost || !needsRescaling(norm.dataSync())) return norm;
  return rescaledNorm(tf.sub(w, negUpdate), axis);
}

/** s·B·A in W's layout: [out, in], or (sB·A)ᵀ = Aᵀ·(sB)ᵀ [in, out] when W is stored transposed. */
function update(a: tf.Tensor, b: tf.Tensor, scale: number, transposeW: boolean): tf.Tensor {
  const scaledB = tf.mul(b, scale);
  return transposeW ? tf.matMul(a, scaledB, true, true) : tf.matMul(scaledB, a);
}

function needsRescaling(norms: ArrayLike<number>): boolean {
  for (let i = 0; i < norms.length; i++) {
    const n = norms[i]!;
    if (n < UNDERFLOW_SUSPECT || n === Infinity) return true;
  }
  return false;
}

/** ‖v‖ = m·‖v / m‖ with m the largest |entry| of the row (1 for an all-zero row). */
function rescaledNorm(v: tf.Tensor, axis: number): tf.Tensor {
  const largest = tf.max(tf.abs(v), axis, true);
  const m = tf.where(tf.equal(largest, 0), tf.onesLike(largest), largest);
  const unit = tf.sqrt(tf.sum(tf.square(tf.div(v, m)), axis));
  return tf.mul(unit, tf.reshape(m, unit.shape));
}
