/**
 * Element types. float32 and int32 are computed with; the narrow types exist for storage
 * (safetensors files, bf16 weight storage on GPU backends) and are widened before arithmetic.
 */
export type DType = 'float32' | 'int32' | 'bfloat16' | 'float16' | 'int8' | 'uint8';

export type TypedArrayFor<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'int32'
    ? Int32Array
    : D extends 'bfloat16' | 'float16'
      ? Uint16Array
      : D extends 'int8'
        ? Int8Array
        : D extends 'uint8'
          ? Uint8Array
          : Float32Array | Int32Array | Uint16Array | Int8Array | Uint8Array;

export type AnyTypedArray = Float32Array | Int32Array | Uint16Array | Int8Array | Uint8Array;

export const BYTES_PER_ELEMENT: Readonly<Record<DType, number>> = {
  float32: 4,
  int32: 4,
  bfloat16: 2,
  float16: 2,
  int8: 1,
  uint8: 1,
};

export function allocFor(dtype: DType, size: number): AnyTypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(size);
    case 'int32':
      return new Int32Array(size);
    case 'bfloat16':
    case 'float16':
      return new Uint16Array(size);
    case 'int8':
      return new Int8Array(size);
    case 'uint8':
      return new Uint8Array(size);
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'bfloat16' || dtype === 'float16';
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits → float32 value. */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** float32 value → bfloat16 bits, round to nearest even (as PyTorch does). */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounding = 0x7fff + ((x >>> 16) & 1);
  return ((x + rounding) >>> 16) & 0xffff;
}

/** IEEE half bits → float32 value. */
export function f16ToF32(h: number): number {
  const s = (h & 0x8000) >> 15;
  const e = (h & 0x7c00) >> 10;
  const f = h & 0x03ff;
  let v: number;
  if (e === 0) v = f * 2 ** -24;
  else if (e === 31) v = f ? NaN : Infinity;
  else v = (1 + f / 1024) * 2 ** (e - 15);
  return s ? -v : v;
}

/** float32 value → IEEE half bits, round to nearest even. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}
