import type { DType } from '@dorajs/core';
import type { TfInfo, TfjsBackend } from '../src/index.js';

/** The tfjs backends the suite runs on; wasm is the one the package treats as optional. */
export const TF_BACKENDS = ['cpu', 'wasm'] as const;

export function info(backend: TfjsBackend, values: ArrayLike<number>, shape: readonly number[], dtype: DType = 'float32'): TfInfo {
  const array = dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
  return { data: backend.upload(array, shape, dtype), shape, dtype };
}

export function wrap(data: TfInfo['data'], shape: readonly number[], dtype: DType = 'float32'): TfInfo {
  return { data, shape, dtype };
}

export async function read(backend: TfjsBackend, t: TfInfo): Promise<number[]> {
  return Array.from(await backend.download(t));
}

/** Deterministic pseudo-random values in [-1, 1) (xorshift), so failures reproduce. */
export function seeded(n: number, seed = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}
