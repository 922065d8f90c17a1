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

  const total = sizeOf(batch);
  // A weight shared by every batch entry (a Linear layer on [batch, seq, in]): fold the batch into rows and
  // run one large GEMM instead of `total` small ones.
  if (!transposeA && sizeOf(batchB) === 1) {
    const rows = tf.reshape(expandBatch(a, batchA, batch, matA), [total * matA[0], matA[1]]);
    return tf.reshape(tf.matMul(rows, tf.reshape(b, matB), false, transposeB), [...outShape]);
  }
  const a3 = tf.reshape(expandBatch(a, batchA, batch, matA), [total, ...matA]);
  const b3 = tf.reshape(expandBatch(b, batchB, batch, matB), [total, ...matB]);
  return tf.reshape(tf.matMul(a3, b3, transposeA, transposeB), [...outShape]);
}

/**
 * The operand materialised over the full batch, only when broadcasting actually repeats it: a batch of the
 * same size is already laid out right (its extra axes are 1s), and tf.broadcastTo would copy it anyway.
 */
function expandBatch(t: tf.Tensor, own: readonly number[], batch: readonly number[], mat: readonly [number, number]): tf.Tensor {
  return sizeOf(own) === sizeOf(batch) ? t : tf.broadcastTo(t, [...batch, ...mat]);
}
