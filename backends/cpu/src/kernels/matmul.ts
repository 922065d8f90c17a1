/**
 * Batched matmul over the last two axes with numpy broadcasting of the leading (batch) axes.
 */
import { broadcastShapes, sameShape, ShapeError, shapeStr, sizeOf } from '@dorajs/core';
import { gemm, type Operand } from './gemm.js';

export interface MatmulShapes {
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly batch: readonly number[];
}

/** Checks a [..., M, K]·b [..., K, N] (after the transposes) against the expected output shape. */
export function matmulShapes(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
  outShape: readonly number[],
): MatmulShapes {
  const what = () =>
    `a ${shapeStr(aShape)}${transposeA ? 'ᵀ' : ''} · b ${shapeStr(bShape)}${transposeB ? 'ᵀ' : ''} → ${shapeStr(outShape)}`;
  if (aShape.length < 2 || bShape.length < 2) throw new ShapeError(`cpu matmul: both operands need at least 2 axes: ${what()}`);
  const ar = aShape.length;
  const br = bShape.length;
  const [m, k] = transposeA ? [aShape[ar - 1]!, aShape[ar - 2]!] : [aShape[ar - 2]!, aShape[ar - 1]!];
  const [kb, n] = transposeB ? [bShape[br - 1]!, bShape[br - 2]!] : [bShape[br - 2]!, bShape[br - 1]!];
  if (k !== kb) throw new ShapeError(`cpu matmul: inner dimensions differ (${k} and ${kb}): ${what()}`);
  const batch = broadcastShapes(aShape.slice(0, -2), bShape.slice(0, -2), 'cpu matmul');
  if (!sameShape([...batch, m, n], outShape)) throw new ShapeError(`cpu matmul: expected output ${shapeStr([...batch, m, n])}: ${what()}`);
  return { m, k, n, batch };
}

export function matmulInto(
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
  s: MatmulShapes,
  out: Float32Array,
): void {
  const { m, k, n, batch } = s;
  const aMat = m * k;
  const bMat = k * n;
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  // Row-major [.., M, K]: element (i, p) at i·K + p; transposed storage [.., K, M]: at p·M + i.
  const aStrides = transposeA ? { rowStride: 1, colStride: m } : { rowStride: k, colStride: 1 };
  const bStrides = transposeB ? { rowStride: 1, colStride: k } : { rowStride: n, colStride: 1 };

  // One B for every batch (a Linear layer's weight): the batch rows of A are one tall matrix.
  if (sizeOf(bBatch) === 1 && !transposeA) {
    const rows = sizeOf(batch) * m;
    gemm(rows, n, k, { data: a, offset: 0, ...aStrides }, { data: b, offset: 0, ...bStrides }, out, 0, n, false);
    return;
  }

  const count = sizeOf(batch);
  const aIndex = batchOffsets(batch, aBatch);
  const bIndex = batchOffsets(batch, bBatch);
  for (let t = 0; t < count; t++) {
    const A: Operand = { data: a, offset: aIndex[t]! * aMat, ...aStrides };
    const B: Operand = { data: b, offset: bIndex[t]! * bMat, ...bStrides };
    gemm(m, n, k, A, B, out, t * m * n, n, false);
  }
}

/** For each index of the broadcast batch, the index of the matrix in an operand of batch shape `own`. */
export function batchOffsets(batch: readonly number[], own: readonly number[]): Int32Array {
  const count = sizeOf(batch);
  const result = new Int32Array(count);
  const rank = batch.length;
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let d = rank - 1, o = own.length - 1; o >= 0; d--, o--) {
    strides[d] = own[o] === 1 ? 0 : stride;
    stride *= own[o]!;
  }
  const index = new Array<number>(rank).fill(0);
  let offset = 0;
  for (let t = 0; t < count; t++) {
    result[t] = offset;
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d]! < batch[d]!) {
        offset += strides[d]!;
        break;
      }
      index[d] = 0;
      offset -= strides[d]! * (batch[d]! - 1);
    }
  }
  return result;
}
