/**
 * DoRA's weight norm ‖W + scale·B·A‖ per output feature.
 *
 * tfjs cannot fuse the sum into the GEMM, so B·A is materialised — inside one tidy scope, so the temporary
 * lives only for the kernel. Cheaper than core's composite all the same: the scale is folded into the small
 * B instead of a pass over the product, W [in, out] is never transposed, and (W + sBA)² is one
 * squaredDifference(W, −sBA) pass. (The Gram expansion ‖W‖² + 2s⟨B, WAᵀ⟩ + s²⟨BG, B⟩ avoids the temporary
 * but measured 6× slower on tfjs-wasm, whose skinny W·Aᵀ GEMM is slow, and cancels badly when W ≈ −sBA.)
 */
import * as tf from '@tensorflow/tfjs-core';

/** W [out, in] (or [in, out] when transposeW), A [r, in], B [out, r] → [out]. */
export function weightNorm(w: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number, transposeW: boolean): tf.Tensor {
  const negScaledB = tf.mul(b, -scale);
  // transposeW: W is [in, out], so the update is (sB·A)ᵀ = Aᵀ·(sB)ᵀ and the norm runs down the columns.
  const negUpdate = transposeW ? tf.matMul(a, negScaledB, true, true) : tf.matMul(negScaledB, a);
  return tf.sqrt(tf.sum(tf.squaredDifference(w, negUpdate), transposeW ? 0 : 1));
}
