/**
 * Quantization on the host, a port of bitsandbytes' CUDA kernels (kQuantizeBlockwise with dQuantizeNF4 /
 * dQuantizeFP4 / dQuantize, kDequantizeBlockwise, kInt8VectorQuant, int8_vectorwise_dequant), in float32
 * arithmetic like the GPU, so the bytes and scales equal what bitsandbytes writes. Used at load time: a
 * checkpoint's values are quantized before they are uploaded, so float32 never reaches the backend.
 */
import { f16ToF32, f32ToF16 } from '../dtype.js';
import { QuantizationError } from '../errors.js';
import { dynamicMap, FP4_BITS, FP4_CODE as FP4_VALUES, FP4_THRESHOLDS, NF4_CODE as NF4_VALUES, NF4_THRESHOLDS } from './codes.js';
import {
  DOUBLE_QUANT_BLOCKSIZE,
  type Int8Host,
  type NestedAbsmaxHost,
  type QuantFormat,
  type Quantized4bitHost,
  type QuantizedHost,
  SUPPORTED_BLOCKSIZES,
} from './format.js';

const f = Math.fround;

export interface QuantizeOptions {
  readonly format: QuantFormat;
  /** 4-bit block size, one of bitsandbytes' (64 default, as `Linear4bit`). */
  readonly blocksize?: number;
  /** Double quantization of the absmax (`bnb_4bit_use_double_quant`): 8-bit dynamic code, blocks of 256. */
  readonly doubleQuant?: boolean;
  /** Names the tensor in errors (a checkpoint key). */
  readonly name?: string;
}

/** Rejects what bitsandbytes cannot represent before anything is converted. */
export function checkQuantizeOptions(options: QuantizeOptions, name: string): void {
  const fmt = options.format as string;
  if (fmt !== 'nf4' && fmt !== 'fp4' && fmt !== 'int8') {
    throw new QuantizationError(`quant type '${fmt}' is not supported (nf4, fp4 or int8)`, name);
  }
  const bs = options.blocksize ?? 64;
  if (fmt !== 'int8' && !SUPPORTED_BLOCKSIZES.includes(bs)) {
    throw new QuantizationError(`block size ${bs} is not supported (one of ${SUPPORTED_BLOCKSIZES.join(', ')})`, name);
  }
  if (fmt === 'int8' && (options.blocksize !== undefined || options.doubleQuant)) {
    throw new QuantizationError('int8 has one scale per row: blocksize and doubleQuant do not apply', name);
  }
}

function checkFinite(values: ArrayLike<number>, name: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) throw new QuantizationError(`element ${i} is ${v}: only finite weights can be quantized`, name);
  }
}

/**
 * Quantizes a row-major [rows, cols] float32 matrix the way bitsandbytes does. Throws before converting
 * anything if a value is NaN/±Inf or the options are unsupported.
 */
export function quantizeHost(values: Float32Array, shape: readonly [number, number], options: QuantizeOptions): QuantizedHost {
  const name = options.name ?? '<tensor>';
  checkQuantizeOptions(options, name);
  if (values.length !== shape[0] * shape[1]) {
    throw new QuantizationError(`${values.length} values do not fill [${shape.join(', ')}]`, name);
  }
  checkFinite(values, name);
  if (options.format === 'int8') return quantizeInt8Rows(values, shape, name);
  const blocksize = options.blocksize ?? 64;
  const { data, absmax } = quantize4bit(values, options.format, blocksize);
  if (!options.doubleQuant) return { format: options.format, shape: [shape[0], shape[1]], blocksize, data, absmax, nested: null };
  const nested = quantizeAbsmax(absmax);
  return { format: options.format, shape: [shape[0], shape[1]], blocksize, data, absmax: nested.codes, nested: nested.state };
}

function nibble4(x: number, format: 'nf4' | 'fp4'): number {
  if (format === 'nf4') {
    let q = 0;
    for (let t = 0; t < 15; t++) if (x > NF4_THRESHOLDS[t]!) q++;
    return q;
  }
  const sign = x < 0 ? 8 : 0;
  const a = Math.abs(x);
  let k = 0;
  for (let t = 0; t < 7; t++) if (a > FP4_THRESHOLDS[t]!) k++;
  return FP4_BITS[k]! + sign;
}

/** kQuantizeBlockwise for FP4/NF4: element 2i in the high nibble of byte i, x·(1/absmax) in float32. */
function quantize4bit(values: Float32Array, format: 'nf4' | 'fp4', blocksize: number): { data: Uint8Array; absmax: Float32Array } {
  const n = values.length;
  const blocks = Math.ceil(n / blocksize);
  const absmax = new Float32Array(blocks);
  const data = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(n, start + blocksize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(values[i]!));
    absmax[b] = m;
    // An all-zero block gives 1/0 = Inf and 0·Inf = NaN, which the trees map to nibble 0 (as on the GPU).
    const inv = f(1 / m);
    for (let i = start; i < end; i += 2) {
      const hi = nibble4(f(values[i]! * inv), format);
      // An odd tail is padded with 0.0 (CUB's BlockLoad default).
      const lo = nibble4(f((i + 1 < n ? values[i + 1]! : 0) * inv), format);
      data[i >> 1] = (hi << 4) | lo;
    }
  }
  return { data, absmax };
}

/** dQuantize<0>: binary search in the 256-entry code, then the nearer of the two neighbours. */
function quantizeToCode(code: Float32Array, x: number): number {
  let pivot = 127;
  let upper = 255;
  let lower = 0;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower = pivot;
      pivot += i;
    } else {
      upper = pivot;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upper === 255) upper = 254;
  return Math.abs(f(x - code[lower]!)) < Math.abs(f(x - code[upper]!)) ? lower : upper;
}

/**
 * quantize_4bit(compress_statistics=True): offset = absmax.mean(), then quantize_blockwise(absmax − offset,
 * blocksize=256) with the dynamic code. The mean is summed in float64 and rounded once (CUDA's float32
 * reduction order cannot be reproduced; the offset is stored, so dequantization is unaffected).
 */
export function quantizeAbsmax(absmax: Float32Array): { codes: Uint8Array; state: NestedAbsmaxHost } {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i]!;
  const offset = f(sum / absmax.length);
  const code = dynamicMap();
  const bs = DOUBLE_QUANT_BLOCKSIZE;
  const n = absmax.length;
  const blocks = Math.ceil(n / bs);
  const codes = new Uint8Array(n);
  const absmax2 = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * bs;
    const end = Math.min(n, start + bs);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(f(absmax[i]! - offset)));
    absmax2[b] = m;
    const inv = f(1 / m);
    for (let i = start; i < end; i++) codes[i] = quantizeToCode(code, f(f(absmax[i]! - offset) * inv));
  }
  return { codes, state: { absmax: absmax2, code: Float32Array.from(code), offset, blocksize: bs } };
}

/** dequantize_blockwise(codes, state2) + offset, in float32: the per-block absmax of a double-quantized weight. */
export function dequantizeAbsmaxHost(codes: Uint8Array, nested: NestedAbsmaxHost): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    out[i] = f(f(nested.code[codes[i]!]! * nested.absmax[Math.floor(i / nested.blocksize)]!) + nested.offset);
  }
  return out;
}

/** The float32 absmax per block, resolving double quantization. */
export function absmaxHost(q: Quantized4bitHost): Float32Array {
  return q.nested ? dequantizeAbsmaxHost(q.absmax as Uint8Array, q.nested) : (q.absmax as Float32Array);
}

/**
 * kInt8VectorQuant with threshold 0 (what `Int8Params` runs): the row is first cast to float16 as
 * bitsandbytes does, SCB = max|row|, q = round-half-even(x · (127 / SCB)).
 */
function quantizeInt8Rows(values: Float32Array, shape: readonly [number, number], name: string): Int8Host {
  const [rows, cols] = shape;
  const data = new Int8Array(rows * cols);
  const scb = new Float32Array(rows);
  const half = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      half[c] = f16ToF32(f32ToF16(values[r * cols + c]!));
      if (!Number.isFinite(half[c]!)) {
        throw new QuantizationError(`element ${r * cols + c} (${values[r * cols + c]}) overflows float16, which int8 quantizes from`, name);
      }
      m = Math.max(m, Math.abs(half[c]!));
    }
    scb[r] = m;
    const scale = f(127 / m);
    for (let c = 0; c < cols; c++) data[r * cols + c] = roundHalfEven(f(half[c]! * scale));
  }
  return { format: 'int8', shape: [rows, cols], data, scb };
}

function roundHalfEven(x: number): number {
  if (Number.isNaN(x)) return 0;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The float32 weight bitsandbytes' dequantize_4bit / int8_vectorwise_dequant would return. */
export function dequantizeHost(q: QuantizedHost): Float32Array {
  const [rows, cols] = q.shape;
  const n = rows * cols;
  const out = new Float32Array(n);
  if (q.format === 'int8') {
    const inv127 = f(1 / 127);
    for (let i = 0; i < n; i++) out[i] = f(f(q.data[i]! * q.scb[Math.floor(i / cols)]!) * inv127);
    return out;
  }
  const absmax = absmaxHost(q);
  const code = q.format === 'nf4' ? NF4_VALUES : FP4_VALUES;
  for (let i = 0; i < n; i++) {
    const byte = q.data[i >> 1]!;
    const nib = i & 1 ? byte & 15 : byte >> 4;
    out[i] = f(code[nib]! * absmax[Math.floor(i / q.blocksize)]!);
  }
  return out;
}
