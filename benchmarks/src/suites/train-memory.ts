/**
 * Shared by the train-* suites: a backend wrapper that counts the bytes of every live storage handle and
 * remembers the high-water mark — the same notion as PyTorch's max_memory_allocated, for any backend
 * whose handles say their size (backend-cpu and backend-webgpu).
 */
import { watchHandles } from '@dorajs/backend-conformance';
import type { Backend } from '@dorajs/core';

export interface MemoryTracked {
  readonly backend: Backend;
  /** Bytes held by live handles now. */
  current(): number;
  /** Highest `current()` since the last `resetPeak()`. */
  peak(): number;
  resetPeak(): void;
}

export function trackMemory(inner: Backend): MemoryTracked {
  let current = 0;
  let peak = 0;
  const sizes = new WeakMap<object, number>();
  const backend = watchHandles(inner, {
    created(handle, bytes) {
      sizes.set(handle, bytes);
      current += bytes;
      if (current > peak) peak = current;
    },
    released(handle) {
      current -= sizes.get(handle) ?? 0;
      sizes.delete(handle);
    },
  });
  return {
    backend,
    current: () => current,
    peak: () => peak,
    resetPeak: () => {
      peak = current;
    },
  };
}

export const MiB = 2 ** 20;

/**
 * Milliseconds of CPU time this process has used. On a shared machine, wall time swings with other
 * processes' load while CPU time counts only our own work, so CPU-backend ratios use it.
 */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
