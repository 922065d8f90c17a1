/**
 * DoRA's weight norm ‖W + scale·B·A‖ per output feature.
 *
 * tfjs cannot fuse the sum into the GEMM, so B·A is materialised — but only inside one tidy scope, so the
 * temporary lives for the duration of the kernel, and `scale` is folded into the small B rather than the
 * large product.
 */
import * as tf from '@tensorflow/tfjs-core';

/** W [out, in] (or [in, out] when transposeW), A [r, in], B [out, r] → [out]. */
export function weightNorm(w: tf.Tensor, a: tf.Tensor, b: tf.Tensor, scale: number, transposeW: boolean): tf.Tensor {
  const scaledB = scale === 1 ? b : tf.mul(b, scale);
  // transposeW: W is [in, out], so the update is (sB·A)ᵀ = Aᵀ·(sB)ᵀ, and the norm runs down the columns.
  const update = transposeW ? tf.matMul(a, scaledB, true, true) : tf.matMul(scaledB, a);
  return tf.sqrt(tf.sum(tf.square(tf.add(w, update)), transposeW ? 0 : 1));
}
