/**
 * Narrow weights on typed arrays (docs/narrow-weights.md): the reference for the wasm kernels and the path of
 * `kernels: 'js'`. W is widened one row at a time into a row buffer, never as a whole; sums are float64.
 */
import {
  bf16ToF32,
  code4bit,
  DTypeError,
  f16ToF32,
  type QuantizedInfo,
  ShapeError,
  shapeStr,
  type TensorInfo,
  type WeightInfo,
} from '@dorajs/core';
import type { CpuStorage } from '../storage.js';

/** A narrow W as the kernels read it: stored elements, float32 scales, and (wasm) their heap addresses. */
export interface NarrowW {
  readonly format: 'bfloat16' | 'float16' | 'nf4' | 'fp4' | 'int8';
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint16Array | Uint8Array | Int8Array | Int32Array;
  readonly scales: Float32Array | null;
  readonly blocksize: number;
  readonly dataPtr: number;
  readonly scalesPtr: number;
}

const isQuantized = (w: WeightInfo): w is QuantizedInfo => 'format' in w;

/**
 * Checks a narrow weight operand (dtype, shape, every part's length; `read` validates each handle) and
 * returns what the kernels read.
 */
export function narrowOperand(op: string, w: WeightInfo, read: (t: TensorInfo<CpuStorage>) => ArrayLike<number>): NarrowW {
  if (!isQuantized(w)) {
    if (w.dtype !== 'bfloat16' && w.dtype !== 'float16') {
      throw new DTypeError(`cpu ${op}: a narrow W is bfloat16, float16 or packed, got ${w.dtype} ${shapeStr(w.shape)}`);
    }
    if (w.shape.length !== 2) throw new ShapeError(`cpu ${op}: W must be 2-D, got ${shapeStr(w.shape)}`);
    const data = read(w as TensorInfo<CpuStorage>) as Uint16Array;
    const h = w.data as CpuStorage;
    return { format: w.dtype, rows: w.shape[0]!, cols: w.shape[1]!, data, scales: null, blocksize: 0, dataPtr: h.ptr, scalesPtr: 0 };
  }
  const [rows, cols] = w.shape;
  const n = rows * cols;
  const data = read(w.data as TensorInfo<CpuStorage>) as Uint8Array | Int8Array | Int32Array;
  const scales = read(w.scales as TensorInfo<CpuStorage>);
  if (!(scales instanceof Float32Array)) throw new DTypeError(`cpu ${op}: ${w.format} scales must be float32, got ${w.scales.dtype}`);
  const want = (what: string, got: number, expect: number) => {
    if (got !== expect)
      throw new ShapeError(`cpu ${op}: ${w.format} W [${rows}, ${cols}]: ${what} has ${got} elements, expected ${expect}`);
  };
  if (w.format === 'int8') {
    want('data', data.length, n);
    want('SCB', scales.length, rows);
  } else {
    if (!(w.blocksize >= 64 && (w.blocksize & (w.blocksize - 1)) === 0))
      throw new ShapeError(`cpu ${op}: block size ${w.blocksize} is not a power of two ≥ 64`);
    want('packed data', data.length, Math.ceil(n / 2));
    want('absmax', scales.length, Math.ceil(n / w.blocksize));
  }
  // The wasm kernels read 8-bit storage; int32-held bytes (never made on this backend) take the JS path.
  const byteBacked = data instanceof Uint8Array || data instanceof Int8Array;
  return {
    format: w.format,
    rows,
    cols,
    data,
    scales,
    blocksize: w.format === 'int8' ? cols : w.blocksize,
    dataPtr: byteBacked ? (w.data.data as CpuStorage).ptr : 0,
    scalesPtr: (w.scales.data as CpuStorage).ptr,
  };
}

/** Row r of W widened into out[offset ..], exactly as bitsandbytes dequantizes. */
export function decodeRow(w: NarrowW, r: number, out: Float32Array, offset = 0): void {
  const { cols, data } = w;
  const e0 = r * cols;
  switch (w.format) {
    case 'bfloat16':
      for (let c = 0; c < cols; c++) out[offset + c] = bf16ToF32(data[e0 + c]!);
      return;
    case 'float16':
      for (let c = 0; c < cols; c++) out[offset + c] = f16ToF32(data[e0 + c]!);
      return;
    case 'int8': {
      const s = w.scales![r]!;
      const inv = Math.fround(1 / 127);
      for (let c = 0; c < cols; c++) out[offset + c] = Math.fround(Math.fround(data[e0 + c]! * s) * inv);
      return;
    }
    default: {
      const code = code4bit(w.format);
      const scales = w.scales!;
      for (let c = 0; c < cols; c++) {
        const e = e0 + c;
        const byte = data[e >> 1]! & 0xff;
        out[offset + c] = Math.fround(code[e & 1 ? byte & 15 : byte >> 4]! * scales[Math.floor(e / w.blocksize)]!);
      }
    }
  }
}

/** transposeW: y [m, rows] = x [m, cols]·Wᵀ; else y [m, cols] = x [m, rows]·W. float64 sums. */
export function matmulNarrowInto(w: NarrowW, x: Float32Array, m: number, transposeW: boolean, y: Float32Array): void {
  const { rows, cols } = w;
  const row = new Float32Array(cols);
  if (transposeW) {
    for (let r = 0; r < rows; r++) {
      decodeRow(w, r, row);
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += x[i * cols + c]! * row[c]!;
        y[i * rows + r] = s;
      }
    }
    return;
  }
  const acc = new Float64Array(m * cols);
  for (let r = 0; r < rows; r++) {
    decodeRow(w, r, row);
    for (let i = 0; i < m; i++) {
      const xv = x[i * rows + r]!;
      if (xv === 0) continue;
      for (let c = 0; c < cols; c++) acc[i * cols + c] = acc[i * cols + c]! + xv * row[c]!;
    }
  }
  y.set(acc);
}

/** ‖W + s·B·A‖ per output feature in float64 (W [out, in], or stored [in, out] with transposeW). */
export function weightNormNarrowInto(
  w: NarrowW,
  a: Float32Array,
  b: Float32Array,
  r: number,
  scale: number,
  transposeW: boolean,
  norms: Float32Array,
): void {
  const row = new Float32Array(w.cols);
  const [out, inF] = transposeW ? [w.cols, w.rows] : [w.rows, w.cols];
  const totals = new Float64Array(out);
  const ba = (o: number, i: number) => {
    let s = 0;
    for (let k = 0; k < r; k++) s += b[o * r + k]! * a[k * inF + i]!;
    return s;
  };
  for (let s = 0; s < w.rows; s++) {
    decodeRow(w, s, row);
    for (let c = 0; c < w.cols; c++) {
      const [o, i] = transposeW ? [c, s] : [s, c];
      const v = row[c]! + scale * ba(o, i);
      totals[o] = totals[o]! + v * v;
    }
  }
  for (let o = 0; o < out; o++) norms[o] = Math.sqrt(totals[o]!);
}
