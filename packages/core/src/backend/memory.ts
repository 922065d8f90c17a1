/**
 * Refusing up front: before a loader uploads anything it asks whether every tensor (and a declared budget,
 * e.g. a KV cache) fits the backend's bounded memory, and gets a typed error naming the first tensor that
 * does not, the bytes and the limit — instead of failing half-way with part of a model uploaded.
 */
import { OutOfMemoryError } from '../errors.js';
import type { Backend } from './backend.js';

export interface PlannedTensor {
  /** Names it in the error (a checkpoint key). */
  readonly name: string;
  readonly bytes: number;
}

/**
 * Throws OutOfMemoryError when `tensors` plus `reserveBytes` (named `reserveName`) would not fit what the
 * backend has left. A backend without `memory()` has no known bound: nothing to check.
 */
export function checkFits(
  backend: Backend,
  tensors: readonly PlannedTensor[],
  reserveBytes = 0,
  reserveName = 'the reserved budget',
): void {
  const info = backend.memory?.();
  if (!info) return;
  let total = info.usedBytes;
  const all = reserveBytes > 0 ? [...tensors, { name: reserveName, bytes: reserveBytes }] : tensors;
  for (const t of all) {
    total += t.bytes;
    if (total > info.limitBytes) {
      throw new OutOfMemoryError(
        `backend '${backend.name}' cannot hold ${t.name} (${t.bytes} bytes): with what is already in use (${info.usedBytes} bytes) and the tensors before it, ${total} bytes exceed its limit of ${info.limitBytes} bytes`,
        t.name,
        t.bytes,
        info.limitBytes,
      );
    }
  }
}
