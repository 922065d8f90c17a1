/**
 * Shared by the train-* suites: a backend wrapper that counts the bytes of every live storage handle and
 * remembers the high-water mark — the same notion as PyTorch's max_memory_allocated, for any backend
 * whose handles expose their typed array (`values` on backend-cpu).
 */
import type { Backend } from '@dorajs/core';

export interface MemoryTracked {
  readonly backend: Backend;
  /** Bytes held by live handles now. */
  current(): number;
  /** Highest `current()` since the last `resetPeak()`. */
  peak(): number;
  resetPeak(): void;
}

function bytesOf(handle: unknown): number {
  const values = (handle as { values?: ArrayBufferView } | null)?.values;
  return values && ArrayBuffer.isView(values) ? values.byteLength : 0;
}

const NOT_HANDLES = new Set(['download', 'release', 'liveBuffers', 'sync', 'dispose']);

export function trackMemory(inner: Backend): MemoryTracked {
  let current = 0;
  let peak = 0;
  const sizes = new WeakMap<object, number>();
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'release') {
        return (handle: object) => {
          current -= sizes.get(handle) ?? 0;
          sizes.delete(handle);
          return (value as (h: object) => void).call(target, handle);
        };
      }
      if (NOT_HANDLES.has(String(prop))) return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const out = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (out !== null && typeof out === 'object' && !sizes.has(out)) {
          const bytes = bytesOf(out);
          if (bytes > 0) {
            sizes.set(out, bytes);
            current += bytes;
            if (current > peak) peak = current;
          }
        }
        return out;
      };
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
