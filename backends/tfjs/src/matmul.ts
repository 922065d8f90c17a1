/** Batched matmul with numpy broadcasting of the leading axes, on tfjs' 2-D / equal-batch 3-D matMul. */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '@dorajs/core';
import { broadcastShapes, formatShape, sizeOf } from './shapes.js';

export function batchedMatMul(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
  outShape: readonly number[],
): tf.Tensor {
  if (a.rank < 2 || b.rank < 2) {
    throw new ShapeError(`matmul: operands need rank ≥ 2, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  if (a.rank === 2 && b.rank === 2) return tf.matMul(a, b, transposeA, transposeB);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const matA = a.shape.slice(-2) as [number, number];
  const matB = b.shape.slice(-2) as [number, number];
  const batch = broadcastShapes('matmul', batchA, batchB);
  const n = outShape[outShape.length - 1]!;

  // A weight shared by every batch entry: fold the batch into rows and run one large GEMM.
  if (!transposeA && sizeOf(batchB) === 1) {
    const rows = tf.reshape(tf.broadcastTo(a, [...batch, ...matA]), [-1, matA[1]]);
    return tf.reshape(tf.matMul(rows, tf.reshape(b, matB), false, transposeB), [...batch, matA[0], n]);
  }
  const total = sizeOf(batch);
  const a3 = tf.reshape(sizeOf(batchA) === total ? a : tf.broadcastTo(a, [...batch, ...matA]), [total, ...matA]);
  const b3 = tf.reshape(sizeOf(batchB) === total ? b : tf.broadcastTo(b, [...batch, ...matB]), [total, ...matB]);
  return tf.reshape(tf.matMul(a3, b3, transposeA, transposeB), [...outShape]);
}
