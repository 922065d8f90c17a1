/**
 * Token ids enter a model as an int32 Tensor [batch, seq]. Kernels index embedding tables with them
 * unchecked, so ids are validated on the host — where they come from (JSON, a safetensors file) — before
 * upload. `tokenIds` does both; `validateTokenIds` checks a tensor that is already on a backend.
 */
import { type Backend, type HostTensor, preview, type Tensor, tensor } from '@dorajs/core';
import { TokenIdsError } from '../errors.js';

export type TokenIdsInput = readonly (readonly number[])[] | HostTensor;

export interface TokenIdsOptions {
  readonly vocabSize: number;
  readonly backend: Backend;
  /** Names the origin in errors (a file, a key); default 'token ids'. */
  readonly source?: string;
}

/** Validates ids (rectangular, integers, 0 ≤ id < vocabSize) and uploads them as int32 [batch, seq]. */
export function tokenIds(input: TokenIdsInput, options: TokenIdsOptions): Tensor {
  const source = options.source ?? 'token ids';
  const { values, shape } = Array.isArray(input)
    ? fromNested(input as readonly (readonly number[])[], source)
    : fromHost(input as HostTensor, source);
  checkRange(values, shape, options.vocabSize, source);
  return tensor(values, shape, { backend: options.backend, dtype: 'int32' });
}

/** Checks the values of an int32 ids tensor already on a backend (downloads it). */
export async function validateTokenIds(ids: Tensor, vocabSize: number, source = 'token ids'): Promise<void> {
  checkIdsTensor(ids, source);
  checkRange((await ids.data()) as Int32Array, ids.shape as [number, number], vocabSize, source);
}

/** Dtype and rank checks a forward pass can make without reading values. */
export function checkIdsTensor(ids: Tensor, source: string): void {
  if (ids.dtype !== 'int32') throw new TokenIdsError(`ids must be int32, got ${ids.dtype}`, source);
  if (ids.rank !== 2 || ids.shape[0] === 0 || ids.shape[1] === 0) {
    throw new TokenIdsError(`ids must be a non-empty [batch, seq] tensor, got [${ids.shape.join(', ')}]`, source);
  }
}

function fromNested(rows: readonly (readonly number[])[], source: string): { values: Int32Array; shape: [number, number] } {
  const first = rows[0];
  if (!Array.isArray(first) || first.length === 0) throw new TokenIdsError('ids must be a non-empty [[…], …] array', source);
  const seq = first.length;
  const values = new Int32Array(rows.length * seq);
  rows.forEach((row, b) => {
    if (!Array.isArray(row)) throw new TokenIdsError(`row ${b} is not an array`, source);
    if (row.length !== seq) {
      throw new TokenIdsError(`ids are not rectangular: row 0 has ${seq} ids, row ${b} has ${row.length}`, source);
    }
    row.forEach((id, s) => {
      if (typeof id !== 'number' || !Number.isInteger(id))
        throw new TokenIdsError(`id ${preview(id)} at [${b}, ${s}] is not an integer`, source);
      if (id < -(2 ** 31) || id >= 2 ** 31) throw new TokenIdsError(`id ${id} at [${b}, ${s}] does not fit in int32`, source);
      values[b * seq + s] = id;
    });
  });
  return { values, shape: [rows.length, seq] };
}

function fromHost(host: HostTensor, source: string): { values: Int32Array; shape: [number, number] } {
  if (host.shape.length !== 2 || host.shape[0] === 0 || host.shape[1] === 0) {
    throw new TokenIdsError(`ids must be a non-empty [batch, seq] tensor, got [${host.shape.join(', ')}]`, source);
  }
  const shape: [number, number] = [host.shape[0]!, host.shape[1]!];
  switch (host.dtype) {
    case 'I32':
      return { values: host.data, shape };
    case 'I8':
    case 'U8':
      return { values: Int32Array.from(host.data), shape };
    case 'I64': {
      const values = new Int32Array(host.data.length);
      host.data.forEach((v, i) => {
        if (v < -(2n ** 31n) || v >= 2n ** 31n) throw new TokenIdsError(`id ${v} at ${position(i, shape)} does not fit in int32`, source);
        values[i] = Number(v);
      });
      return { values, shape };
    }
    default:
      throw new TokenIdsError(`ids must be an integer tensor (I64, I32, I8, U8), got ${host.dtype}`, source);
  }
}

function checkRange(values: Int32Array, shape: readonly [number, number], vocabSize: number, source: string): void {
  for (let i = 0; i < values.length; i++) {
    const id = values[i]!;
    if (id < 0 || id >= vocabSize) {
      throw new TokenIdsError(`id ${id} at ${position(i, shape)} is outside the vocabulary (vocab_size ${vocabSize})`, source);
    }
  }
}

const position = (i: number, shape: readonly [number, number]): string => `[${Math.floor(i / shape[1])}, ${i % shape[1]}]`;
