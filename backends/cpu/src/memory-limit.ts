/**
 * `memoryLimitBytes`: a cap on the bytes the CPU backend's live tensors may hold, below what the machine or
 * the wasm heap allows — so that running out of memory can be provoked in tests and bounded in an
 * application. An allocation that would pass the cap is refused with core's OutOfMemoryError before any
 * memory is taken, exactly as a full wasm heap is.
 */
import { ConfigError, OutOfMemoryError } from '@dorajs/core';
import type { LiveCounter } from './storage.js';

/** Validates the option: undefined (no cap) or a non-negative integer number of bytes. */
export function parseMemoryLimit(value: number | undefined): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ConfigError(`cpu backend: memoryLimitBytes must be a non-negative integer number of bytes, got ${String(value)}`);
  }
  return value;
}

/** Throws an OutOfMemoryError if `bytes` more would take the live tensors past `limit`. */
export function checkMemoryLimit(live: LiveCounter, limit: number, bytes: number, what: string): void {
  if (live.bytes + bytes <= limit) return;
  throw new OutOfMemoryError(
    `cpu: ${what} (${bytes} bytes) does not fit memoryLimitBytes: ${live.bytes} of ${limit} bytes are held by live tensors`,
    what,
    bytes,
    limit,
  );
}
