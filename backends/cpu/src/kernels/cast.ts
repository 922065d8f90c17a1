/**
 * dtype conversion. Narrow float types are stored as raw bits and widened here; float → integer
 * truncates toward zero (as `tensor.to(torch.int32)`), out-of-range integers wrap, NaN becomes 0.
 */
import { type AnyTypedArray, bf16ToF32, type DType, f16ToF32, f32ToBf16, f32ToF16 } from '@dorajs/core';

export function castInto(x: AnyTypedArray, from: DType, to: DType, out: AnyTypedArray): void {
  const n = x.length;
  if (from === to) {
    (out as Uint8Array).set(x as Uint8Array);
    return;
  }
  // Narrow floats widen through their bit decoders; everything else is already a number.
  const read: ((i: number) => number) | null =
    from === 'bfloat16' ? (i) => bf16ToF32(x[i]!) : from === 'float16' ? (i) => f16ToF32(x[i]!) : null;
  if (to === 'bfloat16' || to === 'float16') {
    const encode = to === 'bfloat16' ? f32ToBf16 : f32ToF16;
    for (let i = 0; i < n; i++) out[i] = encode(read ? read(i) : x[i]!);
    return;
  }
  const integral = to !== 'float32';
  for (let i = 0; i < n; i++) {
    const v = read ? read(i) : x[i]!;
    // Typed-array stores already truncate toward zero and wrap; Math.trunc makes the intent explicit.
    out[i] = integral ? Math.trunc(v) : v;
  }
}

/** The stored representation of `value` in `dtype` (raw bits for the narrow float types). */
export function encodeScalar(value: number, dtype: DType): number {
  if (dtype === 'bfloat16') return f32ToBf16(value);
  if (dtype === 'float16') return f32ToF16(value);
  return value;
}
