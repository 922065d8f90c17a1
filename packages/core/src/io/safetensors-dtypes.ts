/**
 * The safetensors dtype table. Every dtype the format defines is listed with its bit width so that a
 * header can be validated (sizes, tiling) even when a tensor's dtype is one dorajs cannot decode; the
 * error for such a tensor is raised only when that tensor is read, so the other keys stay usable.
 */

/** Dtypes dorajs decodes into host typed arrays (and can write). */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I8' | 'U8';

export const READABLE_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16', 'I64', 'I32', 'I8', 'U8'];

/** Bits per element for every dtype of the format (safetensors 0.6), readable or not. */
const BITS: Readonly<Record<string, number>> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

/**
 * Alignment rank used to order tensors when writing, matching the Rust/Python writer: larger types first
 * (I64 before F32 before BF16 …), so every tensor stays aligned to its own item size.
 */
const WRITE_RANK: Readonly<Record<SafetensorsDType, number>> = { I64: 6, F32: 5, I32: 4, BF16: 3, F16: 2, I8: 1, U8: 0 };

export function isKnownDType(name: string): boolean {
  return Object.hasOwn(BITS, name);
}

export function isReadableDType(name: string): name is SafetensorsDType {
  return (READABLE_DTYPES as readonly string[]).includes(name);
}

/** Bits per element of a known dtype. */
export function dtypeBits(name: string): number {
  const bits = BITS[name];
  if (bits === undefined) throw new RangeError(`not a safetensors dtype: ${name}`);
  return bits;
}

export function bytesPerElement(dtype: SafetensorsDType): number {
  return dtypeBits(dtype) / 8;
}

export function writeRank(dtype: SafetensorsDType): number {
  return WRITE_RANK[dtype];
}
