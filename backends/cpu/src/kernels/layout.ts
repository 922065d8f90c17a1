/**
 * Layout kernels: transpose (any permutation), slice and concat. All copy; none computes.
 */
import type { AnyTypedArray } from '@dorajs/core';

/** out = x permuted so that out axis d is x axis perm[d]. */
export function transposeInto(x: AnyTypedArray, shape: readonly number[], perm: readonly number[], out: AnyTypedArray): void {
  const rank = shape.length;
  const inStrides = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]!);
  const strides = perm.map((p) => inStrides[p]!); // input stride of each output axis
  if (rank === 0 || out.length === 0) {
    if (out.length) out[0] = x[0]!;
    return;
  }
  if (rank === 2 && perm[0] === 1) {
    transpose2d(x, shape[0]!, shape[1]!, out);
    return;
  }
  // Walk the output in order; the innermost output axis is a strided run over the input.
  const inner = rank - 1;
  const n = outShape[inner]!;
  const s = strides[inner]!;
  const index = new Array<number>(inner).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o += n) {
    for (let i = 0, j = src; i < n; i++, j += s) out[o + i] = x[j]!;
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d]! < outShape[d]!) {
        src += strides[d]!;
        break;
      }
      index[d] = 0;
      src -= strides[d]! * (outShape[d]! - 1);
    }
  }
}

/** [rows, cols] → [cols, rows] in 32×32 tiles so both sides stay in cache. */
function transpose2d(x: AnyTypedArray, rows: number, cols: number, out: AnyTypedArray): void {
  const T = 32;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(rows, i0 + T);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(cols, j0 + T);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = x[i * cols + j]!;
    }
  }
}

export function sliceInto(
  x: AnyTypedArray,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  out: AnyTypedArray,
): void {
  const rank = shape.length;
  if (rank === 0 || out.length === 0) {
    if (out.length) out[0] = x[0]!;
    return;
  }
  const strides = stridesOf(shape);
  const inner = rank - 1;
  const n = size[inner]!;
  const index = new Array<number>(inner).fill(0);
  let src = 0;
  for (let d = 0; d < rank; d++) src += begin[d]! * strides[d]!;
  for (let o = 0; o < out.length; o += n) {
    out.set(x.subarray(src, src + n), o);
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d]! < size[d]!) {
        src += strides[d]!;
        break;
      }
      index[d] = 0;
      src -= strides[d]! * (size[d]! - 1);
    }
  }
}

/** Inputs share every axis but `axis`; each contributes a contiguous chunk per outer index. */
export function concatInto(parts: readonly { values: AnyTypedArray; shape: readonly number[] }[], axis: number, out: AnyTypedArray): void {
  if (parts.length === 0) return;
  const shape0 = parts[0]!.shape;
  let outer = 1;
  for (let d = 0; d < axis; d++) outer *= shape0[d]!;
  const chunks = parts.map((p) => (outer === 0 ? 0 : p.values.length / outer));
  let o = 0;
  for (let i = 0; i < outer; i++) {
    for (let t = 0; t < parts.length; t++) {
      const chunk = chunks[t]!;
      out.set(parts[t]!.values.subarray(i * chunk, (i + 1) * chunk), o);
      o += chunk;
    }
  }
}

export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d]!;
  }
  return strides;
}
