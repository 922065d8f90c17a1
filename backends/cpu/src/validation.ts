/**
 * The CPU backend's input checks, apart from its kernel dispatch (`cpu-backend.ts`): a handle is live, ours
 * and holds what its shape and dtype claim, and an op's shapes fit, before any kernel reads memory.
 */
import {
  type AnyTypedArray,
  BackendError,
  broadcastShapes,
  DisposedTensorError,
  type DType,
  DTypeError,
  sameShape,
  ShapeError,
  shapeStr,
  sizeOf,
  type TensorInfo,
} from '@dorajs/core';
import { CpuStorage, type LiveCounter } from './storage.js';

export type CpuInfo = TensorInfo<CpuStorage>;
export type Numeric = Float32Array | Int32Array;

type ArrayType = Float32ArrayConstructor | Int32ArrayConstructor | Uint16ArrayConstructor | Int8ArrayConstructor | Uint8ArrayConstructor;

export function arrayTypeOf(dtype: DType): ArrayType {
  switch (dtype) {
    case 'float32':
      return Float32Array;
    case 'int32':
      return Int32Array;
    case 'bfloat16':
    case 'float16':
      return Uint16Array;
    case 'int8':
      return Int8Array;
    case 'uint8':
      return Uint8Array;
    default:
      throw new DTypeError(`cpu: unknown dtype '${String(dtype)}'`);
  }
}

export function dtypeOfArray(v: AnyTypedArray): DType {
  if (v instanceof Float32Array) return 'float32';
  if (v instanceof Int32Array) return 'int32';
  if (v instanceof Uint16Array) return 'bfloat16'; // same storage as float16
  if (v instanceof Int8Array) return 'int8';
  return 'uint8';
}

export function describeArray(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}

export function checkShape(op: string, shape: readonly number[]): void {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError(`cpu ${op}: invalid shape ${shapeStr(shape)}`);
}

/** The values behind `t`, after checking the handle is live, `owner`'s, and matches its shape and dtype. */
export function readHandle(op: string, t: CpuInfo, owner: LiveCounter): AnyTypedArray {
  const h = t.data;
  if (!(h instanceof CpuStorage)) throw new BackendError(`cpu ${op}: ${describeArray(h)} is not a cpu storage handle`);
  if (h.released) throw new DisposedTensorError(`cpu ${op}: input ${shapeStr(t.shape)} ${t.dtype} was already released`);
  if (h.owner !== owner) throw new BackendError(`cpu ${op}: input ${shapeStr(t.shape)} belongs to another cpu backend instance`);
  if (!(h.values instanceof arrayTypeOf(t.dtype))) {
    throw new DTypeError(`cpu ${op}: input ${shapeStr(t.shape)} claims ${t.dtype} but holds a ${h.values.constructor.name}`);
  }
  const values = h.values;
  if (values.length !== sizeOf(t.shape)) throw new ShapeError(`cpu ${op}: input ${shapeStr(t.shape)} holds ${values.length} elements`);
  return values;
}

export function asNumeric(op: string, t: CpuInfo, v: AnyTypedArray): Numeric {
  if (!(v instanceof Float32Array || v instanceof Int32Array)) {
    throw new DTypeError(`cpu ${op}: needs float32 or int32, got ${t.dtype} ${shapeStr(t.shape)}; cast it first`);
  }
  return v;
}

export function asFloat(op: string, t: CpuInfo, v: AnyTypedArray): Float32Array {
  if (!(v instanceof Float32Array)) throw new DTypeError(`cpu ${op}: needs float32, got ${t.dtype} ${shapeStr(t.shape)}`);
  return v;
}

export function asInt(op: string, t: CpuInfo, v: AnyTypedArray): Int32Array {
  if (!(v instanceof Int32Array)) throw new DTypeError(`cpu ${op}: indices must be int32, got ${t.dtype} ${shapeStr(t.shape)}`);
  return v;
}

export function checkBroadcast(op: string, shapes: readonly (readonly number[])[], outShape: readonly number[]): void {
  const expected = shapes.reduce<readonly number[]>((acc, s) => broadcastShapes(acc, s, `cpu ${op}`), []);
  if (!sameShape(expected, outShape)) {
    throw new ShapeError(
      `cpu ${op}: inputs ${shapes.map(shapeStr).join(', ')} broadcast to ${shapeStr(expected)}, not ${shapeStr(outShape)}`,
    );
  }
}

/** Checks a reduction's axes and result shape; returns the shape with the reduced axes kept as 1. */
export function checkReduce(op: string, shape: readonly number[], axes: readonly number[], outShape: readonly number[]): number[] {
  const rank = shape.length;
  if (axes.length === 0 || axes.some((ax, i) => !Number.isInteger(ax) || ax < 0 || ax >= rank || (i > 0 && ax <= axes[i - 1]!))) {
    throw new ShapeError(`cpu ${op}: axes [${axes.join(', ')}] must be sorted, unique, non-empty and within rank ${rank}`);
  }
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  if (!sameShape(kept, outShape))
    throw new ShapeError(
      `cpu ${op}: reducing ${shapeStr(shape)} over [${axes.join(', ')}] gives ${shapeStr(kept)}, not ${shapeStr(outShape)}`,
    );
  if (op !== 'sum' && op !== 'mean' && axes.some((ax) => shape[ax] === 0))
    throw new ShapeError(`cpu ${op}: cannot reduce an empty axis of ${shapeStr(shape)}`);
  return kept;
}

export function checkScatterAdd(indices: CpuInfo, updates: CpuInfo, numRows: number, indexCount: number, updateCount: number): number {
  const cols = updates.shape[updates.shape.length - 1] ?? 1;
  if (!Number.isInteger(numRows) || numRows < 0)
    throw new ShapeError(`cpu scatterAdd: numRows must be a non-negative integer, got ${numRows}`);
  if (updateCount !== indexCount * cols) {
    throw new ShapeError(
      `cpu scatterAdd: updates ${shapeStr(updates.shape)} do not hold one row of ${cols} per index of ${shapeStr(indices.shape)}`,
    );
  }
  return cols;
}

export function checkPermutation(shape: readonly number[], perm: readonly number[]): void {
  if (perm.length !== shape.length || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw new ShapeError(`cpu transpose: [${perm.join(', ')}] is not a permutation of the axes of ${shapeStr(shape)}`);
  }
}

export function checkSlice(shape: readonly number[], begin: readonly number[], size: readonly number[]): void {
  const fits = (d: number) => {
    const b = begin[d]!;
    const s = size[d]!;
    return Number.isInteger(b) && Number.isInteger(s) && b >= 0 && s >= 0 && b + s <= shape[d]!;
  };
  if (begin.length !== shape.length || size.length !== shape.length || !shape.every((_, d) => fits(d))) {
    throw new ShapeError(`cpu slice: begin [${begin.join(', ')}] size [${size.join(', ')}] does not fit ${shapeStr(shape)}`);
  }
}

/** Checks that `t` joins `first` along `axis` (same dtype, rank and other axes). */
export function checkConcatPart(first: CpuInfo, t: CpuInfo, axis: number): void {
  const rank = first.shape.length;
  if (t.dtype !== first.dtype || t.shape.length !== rank || t.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
    throw new ShapeError(
      `cpu concat: ${shapeStr(t.shape)} ${t.dtype} does not fit ${shapeStr(first.shape)} ${first.dtype} along axis ${axis}`,
    );
  }
}

/**
 * W [out, in] (or [in, out] with transposeW), A [r, in], B [out, r], all 2-D. Core validates the shapes (and
 * flattens conv weights) before calling; this is only the O(1) check the kernels' memory safety needs: they
 * index W, A and B by these sizes, so the sizes must agree with each other (each handle's length was
 * checked against its shape when it was read).
 */
export function weightNormDims(w: CpuInfo, a: CpuInfo, b: CpuInfo, tw: boolean): { out: number; inF: number; r: number } {
  const [w0 = -1, w1 = -1] = w.shape;
  const [out, inF] = tw ? [w1, w0] : [w0, w1];
  const [r, aIn] = a.shape;
  const [bOut, bR] = b.shape;
  if (w.shape.length !== 2 || a.shape.length !== 2 || b.shape.length !== 2 || aIn !== inF || bOut !== out || bR !== r) {
    throw new ShapeError(
      `cpu weightNorm: W ${shapeStr(w.shape)}${tw ? ' (stored [in, out])' : ''}, A ${shapeStr(a.shape)}, B ${shapeStr(b.shape)} do not fit [out, in], [r, in], [out, r]`,
    );
  }
  return { out, inF, r: r! };
}

export function checkDoraCompose(base: CpuInfo, lora: CpuInfo, g: CpuInfo, bias: CpuInfo | null): number {
  const out = base.shape[base.shape.length - 1] ?? 1;
  if (!sameShape(base.shape, lora.shape) || sizeOf(g.shape) !== out || (bias && sizeOf(bias.shape) !== out)) {
    throw new ShapeError(
      `cpu doraCompose: base ${shapeStr(base.shape)}, lora ${shapeStr(lora.shape)}, g ${shapeStr(g.shape)}${bias ? `, bias ${shapeStr(bias.shape)}` : ''} do not fit [..., out], [..., out], [out], [out]`,
    );
  }
  return out;
}
