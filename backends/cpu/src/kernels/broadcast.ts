/**
 * Walking inputs broadcast to an output shape (numpy rules). Axes are coalesced first, so a same-shape
 * operation is one row of the whole size and `[M, N] + [N]` is M rows of N: the kernels' inner loops run
 * over rows with a constant stride per input (1, or 0 for a broadcast input).
 */
import { ShapeError, shapeStr } from '@dorajs/core';

export interface BroadcastPlan {
  /** Number of rows, and the elements per row (the output is rows × rowLength, contiguous). */
  readonly rows: number;
  readonly rowLength: number;
  /** Per input: the stride between consecutive elements of a row (0 when broadcast along it). */
  readonly innerStrides: readonly number[];
  /** Per input: the offset at which each row starts. */
  readonly rowOffsets: readonly Int32Array[];
}

/** `op` names the kernel in errors. Inputs must already be broadcast-compatible with `outShape`. */
export function planBroadcast(op: string, outShape: readonly number[], inputShapes: readonly (readonly number[])[]): BroadcastPlan {
  const rank = outShape.length;
  const strides = inputShapes.map((shape) => {
    if (shape.length > rank)
      throw new ShapeError(`cpu ${op}: input ${shapeStr(shape)} has more axes than the output ${shapeStr(outShape)}`);
    const s = new Array<number>(rank).fill(0);
    let stride = 1;
    for (let d = rank - 1, k = shape.length - 1; k >= 0; d--, k--) {
      const dim = shape[k]!;
      if (dim !== outShape[d] && dim !== 1) {
        throw new ShapeError(`cpu ${op}: input ${shapeStr(shape)} does not broadcast to ${shapeStr(outShape)}`);
      }
      s[d] = dim === 1 ? 0 : stride;
      stride *= dim;
    }
    return s;
  });

  // Coalesce: drop size-1 axes, merge neighbours that every input walks contiguously (or not at all).
  const dims: number[] = [];
  const merged: number[][] = inputShapes.map(() => []);
  for (let d = 0; d < rank; d++) {
    const n = outShape[d]!;
    if (n === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, i) => merged[i]![last] === s[d]! * n)) {
      dims[last]! *= n;
      strides.forEach((s, i) => (merged[i]![last] = s[d]!));
    } else {
      dims.push(n);
      strides.forEach((s, i) => merged[i]!.push(s[d]!));
    }
  }
  if (dims.length === 0) {
    return { rows: 1, rowLength: 1, innerStrides: inputShapes.map(() => 0), rowOffsets: inputShapes.map(() => new Int32Array(1)) };
  }

  const inner = dims.length - 1;
  const rowLength = dims[inner]!;
  let rows = 1;
  for (let d = 0; d < inner; d++) rows *= dims[d]!;
  const rowOffsets = merged.map((s) => {
    const offsets = new Int32Array(rows);
    const index = new Array<number>(inner).fill(0);
    let offset = 0;
    for (let r = 0; r < rows; r++) {
      offsets[r] = offset;
      for (let d = inner - 1; d >= 0; d--) {
        if (++index[d]! < dims[d]!) {
          offset += s[d]!;
          break;
        }
        index[d] = 0;
        offset -= s[d]! * (dims[d]! - 1);
      }
    }
    return offsets;
  });
  return { rows, rowLength, innerStrides: merged.map((s) => s[inner]!), rowOffsets };
}
