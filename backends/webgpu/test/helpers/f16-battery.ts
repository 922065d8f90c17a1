/**
 * Every program that reads a float16 W, run by f16.test.ts (on the test device, the f16 binding against the
 * packed-u32 one) and f16-null.test.ts (compiled on Dawn's Null backend).
 */
import { f16ToF32, f32ToF16, type TensorInfo } from '@dorajs/core';
import { weightNormHost } from '@dorajs/backend-conformance';
import { expect } from 'vitest';
import type { GpuTensor, WebGpuBackend } from '../../src/index.js';
import { matmulRef, randn } from './reference.js';

/** float16 bits of W: random values, with subnormals, ±0 and the largest half among them. */
export function halfBits(n: number, seed: number): Uint16Array {
  const bits = Uint16Array.from(randn(n, seed, 2), f32ToF16);
  for (let i = 0; i < n; i += 7) bits[i] = ((i * 37) % 1023) + 1; // subnormal
  for (let i = 3; i < n; i += 11) bits[i] = 0x8000 | (((i * 13) % 1023) + 1); // negative subnormal
  if (n > 5) [bits[1], bits[5]] = [0x7bff, 0x8000]; // 65504, -0
  return bits;
}

export interface Result {
  readonly name: string;
  readonly out: Float32Array;
  readonly ref: ArrayLike<number>;
}

/**
 * Every program that reads a float16 W, on `be` (and on `split`, a backend on the same device whose
 * tensors larger than 1 KiB are split): results with their float64 references. Without `read`, nothing
 * is downloaded (the Null backend executes nothing).
 */
export async function battery(be: WebGpuBackend, split: WebGpuBackend, read: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const put = (
    on: WebGpuBackend,
    values: Float32Array | Uint16Array | Int32Array,
    shape: number[],
    dtype: 'float32' | 'float16' | 'int32' = 'float32',
  ) => ({ data: on.upload(values as Float32Array, shape, dtype), shape, dtype }) as TensorInfo<GpuTensor>;
  const add = async (on: WebGpuBackend, name: string, y: GpuTensor, ref: ArrayLike<number>) => {
    results.push({
      name,
      out: read ? ((await on.download({ data: y, shape: [y.size], dtype: 'float32' })) as Float32Array) : new Float32Array(),
      ref,
    });
  };
  const reset = () => {
    be.setMatmulVariant('auto');
    be.setWeightNormVariant('auto');
    be.setTuning({});
  };
  // Matmuls with W [N, K] float16 as B, transposed (x·Wᵀ) or not (x·W).
  for (const [name, M, K, N, transB, tuning] of [
    ['rows GEMV x·Wᵀ', 1, 64, 48, true, {}],
    ['GEMV x·W', 1, 64, 48, false, {}],
    ['GEMV x·Wᵀ, K % 4 ≠ 0', 1, 63, 20, true, {}],
    ['tiled vec4 x·Wᵀ', 40, 64, 48, true, {}],
    ['tiled vec4 x·W', 40, 64, 48, false, {}],
    ['tiled scalar', 17, 33, 9, false, {}],
    ['tiled split-K', 20, 100, 24, false, { splitK: 3 }],
    ['small-K', 40, 16, 24, false, {}],
  ] as const) {
    const x = randn(M * K, 1);
    const wShape = transB ? [N, K] : [K, N];
    const bits = halfBits(N * K, 2);
    be.setTuning(tuning);
    const y = be.matmul(put(be, x, [M, K]), put(be, bits, wShape, 'float16'), { transposeB: transB }, [M, N]);
    reset();
    await add(be, name, y, matmulRef(x, [M, K], Float32Array.from(bits, f16ToF32), wShape, false, transB).out);
  }
  // The narrow-weight entry points with a dense float16 W (x·Wᵀ and dY·W, the gather).
  const [rows, cols] = [48, 64];
  const wBits = halfBits(rows * cols, 3);
  const wValues = Float32Array.from(wBits, f16ToF32);
  const w = (on: WebGpuBackend): TensorInfo<GpuTensor> => put(on, wBits, [rows, cols], 'float16');
  const x = randn(3 * cols, 4);
  await add(
    be,
    'matmulNarrow x·Wᵀ',
    be.matmulNarrow(put(be, x, [3, cols]), w(be), true, [3, rows]),
    matmulRef(x, [3, cols], wValues, [rows, cols], false, true).out,
  );
  const dy = randn(3 * rows, 5);
  await add(
    be,
    'matmulNarrow dY·W',
    be.matmulNarrow(put(be, dy, [3, rows]), w(be), false, [3, cols]),
    matmulRef(dy, [3, rows], wValues, [rows, cols], false, false).out,
  );
  const idx = Int32Array.from([0, 47, 5, 60, -1, 12]);
  const gatherRef = Array.from({ length: idx.length * cols }, (_, e) => {
    const r = idx[Math.floor(e / cols)]!;
    return r >= 0 && r < rows ? wValues[r * cols + (e % cols)]! : 0;
  });
  await add(be, 'gather', be.gather(w(be), put(be, idx, [idx.length], 'int32')), gatherRef);
  await add(be, 'gatherNarrow', be.gatherNarrow(w(be), put(be, idx, [idx.length], 'int32')), gatherRef);
  const splitTable = w(split);
  expect(split.buffersOf(splitTable.data)).toBeGreaterThan(1);
  await add(split, 'gather, split table', split.gather(splitTable, put(split, idx, [idx.length], 'int32')), gatherRef);
  // The weight norm: rows (Linear layout), tiles (both layouts, vec4 and scalar W loads), and with the GEMV.
  for (const [name, out, inn, r, transposeW, variant] of [
    ['weight norm rows', 48, 64, 4, false, 'auto'],
    ['weight norm tiles', 70, 96, 20, false, 'tiles'],
    ['weight norm tiles, transposed W', 96, 72, 3, true, 'tiles'],
    ['weight norm tiles, scalar W loads', 37, 70, 5, true, 'tiles'],
  ] as const) {
    const bits = halfBits(out * inn, 6);
    const a = randn(r * inn, 7, 0.3);
    const b = randn(out * r, 8, 0.3);
    be.setWeightNormVariant(variant);
    const n = be.weightNorm(
      put(be, bits, transposeW ? [inn, out] : [out, inn], 'float16'),
      put(be, a, [r, inn]),
      put(be, b, [out, r]),
      1.5,
      { transposeW },
    );
    reset();
    await add(be, name, n, weightNormHost(Float32Array.from(bits, f16ToF32), a, b, out, inn, r, 1.5, transposeW));
  }
  const [a, b, x1] = [randn(4 * cols, 9, 0.3), randn(rows * 4, 10, 0.3), randn(cols, 11)];
  const fused = be.matmulWeightNorm(put(be, x1, [1, cols]), w(be), put(be, a, [4, cols]), put(be, b, [rows, 4]), 2, {});
  expect(fused).not.toBeNull();
  await add(be, 'GEMV + norm in one pass', fused!.base, matmulRef(x1, [1, cols], wValues, [rows, cols], false, true).out);
  await add(be, 'norm of GEMV + norm', fused!.norm, weightNormHost(wValues, a, b, rows, cols, 4, 2, false));
  return results;
}

/** The program families that read W. */
export const ALL_FAMILIES = ['rows:', 'matmul-gemv:', 'matmul-tiled:', 'matmul-smallk:', 'weight-norm:', 'gather:', 'gather-part:'];

/** The families among `keys` with a program for a float16 W bound `as` ('f16' or 'float16', as keys name it). */
export function w16Programs(keys: readonly string[], as: 'f16' | 'float16'): string[] {
  return ALL_FAMILIES.filter((f) => keys.some((k) => k.startsWith(f) && k.split(':').includes(as)));
}
