/**
 * Host tensors: a dtype, a shape and a typed array in host memory, as read from or written to a
 * safetensors file. They carry the file's dtype names; `toFloat32` / `toInt32` widen them to the two
 * types dorajs computes with.
 */
import { f16ToF32 } from '../dtype.js';
import { SafetensorsError } from '../errors.js';
import type { SafetensorsDType } from './safetensors-dtypes.js';

interface HostTensorOf<D extends SafetensorsDType, A> {
  readonly dtype: D;
  readonly shape: readonly number[];
  /** Row-major values; F16/BF16 hold raw bit patterns. */
  readonly data: A;
}

export type HostTensor =
  | HostTensorOf<'F32', Float32Array>
  | HostTensorOf<'F16' | 'BF16', Uint16Array>
  | HostTensorOf<'I64', BigInt64Array>
  | HostTensorOf<'I32', Int32Array>
  | HostTensorOf<'I8', Int8Array>
  | HostTensorOf<'U8', Uint8Array>;

export type HostTypedArray = HostTensor['data'];

/** Where a tensor came from, so conversion errors can name it. */
export interface TensorOrigin {
  readonly file: string;
  readonly key: string;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Float values as float32. F32 data is returned as is (not copied); F16 and BF16 are widened exactly.
 * Integer tensors are refused: reading ids as weights is a caller bug worth surfacing.
 */
export function toFloat32(tensor: HostTensor, origin: TensorOrigin): Float32Array {
  switch (tensor.dtype) {
    case 'F32':
      return tensor.data;
    case 'F16':
      return widen(tensor.data, f16ToF32);
    case 'BF16':
      return widenBf16(tensor.data);
    default:
      throw new SafetensorsError(`expected a float tensor (F32, F16, BF16), found ${tensor.dtype}`, origin.file, origin.key);
  }
}

/**
 * Integer values as int32. I64 is narrowed and every value must fit in int32 (ids and indices do);
 * I8/U8 widen losslessly; I32 is returned as is.
 */
export function toInt32(tensor: HostTensor, origin: TensorOrigin): Int32Array {
  switch (tensor.dtype) {
    case 'I32':
      return tensor.data;
    case 'I8':
    case 'U8':
      return Int32Array.from(tensor.data);
    case 'I64':
      return narrowInt64(tensor.data, origin);
    default:
      throw new SafetensorsError(`expected an integer tensor (I64, I32, I8, U8), found ${tensor.dtype}`, origin.file, origin.key);
  }
}

/** bf16 is the top half of a float32: a shift per element, no per-value conversion call. */
function widenBf16(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

function widen(bits: Uint16Array, convert: (bits: number) => number): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]!);
  return out;
}

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;

function narrowInt64(values: BigInt64Array, origin: TensorOrigin): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < INT32_MIN || v > INT32_MAX) {
      throw new SafetensorsError(`I64 value ${v} at index ${i} does not fit in int32`, origin.file, origin.key);
    }
    out[i] = Number(v);
  }
  return out;
}
