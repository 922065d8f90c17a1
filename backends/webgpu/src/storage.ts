/**
 * How each dtype lives in a GPU buffer. float32 and int32 take one 32-bit word per element; the narrow
 * storage dtypes are packed little-endian into u32 words (two bf16/f16, four int8/uint8), which is exactly
 * the byte layout of the host typed array, so uploads and downloads copy bytes without conversion.
 */
import { BYTES_PER_ELEMENT, DTypeError, type DType } from '@dorajs/core';

export function elementsPerWord(dtype: DType): number {
  return 4 / BYTES_PER_ELEMENT[dtype];
}

export function isPacked(dtype: DType): boolean {
  return BYTES_PER_ELEMENT[dtype] < 4;
}

/** Bytes a tensor of `size` elements occupies: whole words, never zero (empty bindings are invalid). */
export function storageBytes(dtype: DType, size: number): number {
  return Math.max(1, Math.ceil(size / elementsPerWord(dtype))) * 4;
}

export function assertKnownDType(dtype: DType, op: string): void {
  if (!(dtype in BYTES_PER_ELEMENT)) throw new DTypeError(`webgpu ${op}: unknown dtype '${String(dtype)}'`);
}
