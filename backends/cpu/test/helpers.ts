import type { DType } from '@dorajs/core';
import { expect } from 'vitest';
import type { CpuBackend, CpuInfo } from '../src/index.js';

/** Uploads plain numbers as a tensor of `dtype` (float32 by default). */
export function up(backend: CpuBackend, values: ArrayLike<number>, shape: readonly number[], dtype: DType = 'float32'): CpuInfo {
  const array =
    dtype === 'int32'
      ? Int32Array.from(values)
      : dtype === 'float32'
        ? Float32Array.from(values)
        : dtype === 'int8'
          ? Int8Array.from(values)
          : dtype === 'uint8'
            ? Uint8Array.from(values)
            : Uint16Array.from(values);
  return { data: backend.upload(array, shape, dtype), shape, dtype };
}

export async function down(
  backend: CpuBackend,
  data: CpuInfo['data'],
  shape: readonly number[],
  dtype: DType = 'float32',
): Promise<number[]> {
  return Array.from(await backend.download({ data, shape, dtype }));
}

export { seeded } from './seeded.js';

/** Bit-for-bit equality (Object.is per element: NaN equals NaN, −0 differs from +0), cheap on long arrays. */
export function expectSame(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) expect([i, got[i]]).toEqual([i, want[i]]);
}
