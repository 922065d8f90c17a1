/**
 * Turns a tensor's bytes into a host tensor. The bytes must be owned by the caller and not aliased by
 * anyone else: they become the tensor's storage when aligned (the lazy file reader reads each tensor into
 * a fresh buffer, so nothing is copied twice) and are copied only when misaligned.
 */
import { SafetensorsError } from '../errors.js';
import type { HostTensor } from './host-tensor.js';
import { bytesPerElement, isReadableDType, type SafetensorsDType } from './safetensors-dtypes.js';
import type { TensorEntry } from './safetensors-header.js';

/** safetensors is little-endian; typed arrays use the host's order, which is little-endian nearly everywhere. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function decodeTensor(entry: TensorEntry, bytes: Uint8Array, file: string): HostTensor {
  const { key, dtype, shape } = entry;
  if (!isReadableDType(dtype)) {
    throw new SafetensorsError(`dtype ${dtype} is not supported (readable: F32, F16, BF16, I64, I32, I8, U8)`, file, key);
  }
  const size = bytesPerElement(dtype);
  const own = bytes.byteOffset % size === 0 ? bytes : Uint8Array.prototype.slice.call(bytes);
  if (!HOST_IS_LITTLE_ENDIAN) swapBytes(own, size);
  const length = own.byteLength / size;
  return makeHostTensor(dtype, shape, own.buffer, own.byteOffset, length);
}

function makeHostTensor(
  dtype: SafetensorsDType,
  shape: readonly number[],
  buffer: ArrayBufferLike,
  offset: number,
  length: number,
): HostTensor {
  switch (dtype) {
    case 'F32':
      return { dtype, shape, data: new Float32Array(buffer, offset, length) };
    case 'F16':
    case 'BF16':
      return { dtype, shape, data: new Uint16Array(buffer, offset, length) };
    case 'I64':
      return { dtype, shape, data: new BigInt64Array(buffer, offset, length) };
    case 'I32':
      return { dtype, shape, data: new Int32Array(buffer, offset, length) };
    case 'I8':
      return { dtype, shape, data: new Int8Array(buffer, offset, length) };
    case 'U8':
      return { dtype, shape, data: new Uint8Array(buffer, offset, length) };
  }
}

/** Reverses each `size`-byte group in place (little-endian ↔ big-endian). */
export function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}
