/**
 * Shared by the train-* suites: a backend wrapper that counts the bytes of every live storage handle and
 * remembers the high-water mark — the same notion as PyTorch's max_memory_allocated, for any backend
 * whose handles say their size (backend-cpu and backend-webgpu).
 */
import { type Backend, BYTES_PER_ELEMENT, type DType } from '@dorajs/core';

export interface MemoryTracked {
  readonly backend: Backend;
  /** Bytes held by live handles now. */
  current(): number;
  /** Highest `current()` since the last `resetPeak()`. */
  peak(): number;
  resetPeak(): void;
}

/** backend-cpu handles hold their typed array (`values`); backend-webgpu's say `size` elements of `dtype`. */
function bytesOf(handle: unknown): number {
  const h = handle as { values?: unknown; size?: unknown; dtype?: unknown } | null;
  if (h?.values && ArrayBuffer.isView(h.values)) return h.values.byteLength;
  if (typeof h?.size === 'number' && typeof h.dtype === 'string' && h.dtype in BYTES_PER_ELEMENT)
    return h.size * BYTES_PER_ELEMENT[h.dtype as DType];
  return 0;
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

/**
 * Milliseconds of CPU time this process has used. On a shared machine, wall time swings with other
 * processes' load while CPU time counts only our own work, so CPU-backend ratios use it.
 */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
