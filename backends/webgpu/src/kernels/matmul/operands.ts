/** A matmul's shape (batch axes broadcast), its uniforms, and the WGSL operand bindings the scalar programs share. */
import { type DType, type MatMulOptions, ShapeError } from '@dorajs/core';
import { broadcastStrides, MAX_RANK, padTo, sizeOf } from '../../shapes.js';
import { BATCH_OFFSETS, bindInput, bindOutput, DIMS_ACCESSOR, loadF32, storageType, type BoundType } from '../../wgsl/common.js';
import type { TensorArg } from '../elementwise.js';

export interface MatmulShape {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly batch: number;
  readonly dims: readonly number[];
  readonly batchRank: number;
}

const BATCH_SLOTS = MAX_RANK - 2;
/** The `dims` of a matmul without batch axes (the common case, kept off the per-call path). */
const NO_BATCH_DIMS: number[] = [...padTo([], MAX_RANK, 1), ...padTo([], 2 * MAX_RANK)];

export function resolveShape(a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): MatmulShape {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2)
    throw new ShapeError(`webgpu matmul: operands need 2+ axes, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [am, ak] = options.transposeA ? [a.shape[ra - 1]!, a.shape[ra - 2]!] : [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const [bk, bn] = options.transposeB ? [b.shape[rb - 1]!, b.shape[rb - 2]!] : [b.shape[rb - 2]!, b.shape[rb - 1]!];
  const ro = outShape.length;
  if (ak !== bk || outShape[ro - 2] !== am || outShape[ro - 1] !== bn) {
    throw new ShapeError(
      `webgpu matmul: [${a.shape.join(', ')}]${options.transposeA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${options.transposeB ? 'ᵀ' : ''} does not give [${outShape.join(', ')}]`,
    );
  }
  if (ra === 2 && rb === 2) return { M: am, N: bn, K: ak, batch: 1, batchRank: 0, dims: NO_BATCH_DIMS };
  const outBatch = outShape.slice(0, -2);
  if (outBatch.length > BATCH_SLOTS) throw new ShapeError(`webgpu matmul: more than ${BATCH_SLOTS} batch axes in [${outShape.join(', ')}]`);
  const aStrides = broadcastStrides(a.shape.slice(0, -2), outBatch, 'matmul').map((s) => s * am * ak);
  const bStrides = broadcastStrides(b.shape.slice(0, -2), outBatch, 'matmul').map((s) => s * bk * bn);
  return {
    M: am,
    N: bn,
    K: ak,
    batch: sizeOf(outBatch),
    batchRank: outBatch.length,
    dims: [...padTo(outBatch, MAX_RANK, 1), ...padTo(aStrides, MAX_RANK), ...padTo(bStrides, MAX_RANK)],
  };
}

export const UNIFORMS = {
  scalars: [
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['batchRank', 'u32'],
    ['kChunk', 'u32'],
    ['splits', 'u32'],
    ['batch', 'u32'],
    ['escale', 'f32'],
  ],
  dims: 3 * MAX_RANK,
} as const;

/** WGSL bindings of the scalar programs (C = A·B, operands in their storage types) and their batch offsets. */
export function scalarOperands(aType: DType, bType: BoundType): string {
  return `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', 'f32')}
${bindInput(2, 'A', storageType(aType))}
${bindInput(3, 'B', storageType(bType))}`;
}

/** Scalar element accessors honouring transposition and dtype, for the bounds-checked and simple programs. */
export function scalarAccessors(aType: DType, bType: BoundType, transA: boolean, transB: boolean): string {
  const ai = transA ? 'aBase + k * P.M + m' : 'aBase + m * P.K + k';
  const bi = transB ? 'bBase + n * P.K + k' : 'bBase + k * P.N + n';
  return `fn A_at(aBase: u32, m: u32, k: u32) -> f32 { return ${loadF32('A', aType, ai)}; }
fn B_at(bBase: u32, k: u32, n: u32) -> f32 { return ${loadF32('B', bType, bi)}; }`;
}
