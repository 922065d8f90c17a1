/**
 * A Backend wrapped so that a test or benchmark sees every storage handle the backend hands out and every
 * release — the hook behind live-byte counters (PyTorch's max_memory_allocated) and "what is alive at the
 * peak" probes. The wrapped backend behaves exactly as the inner one.
 */
import { type Backend, BYTES_PER_ELEMENT, type DType } from '@dorajs/core';

/** Methods that return something other than a new storage handle (or nothing). */
const NOT_HANDLES = new Set(['download', 'release', 'liveBuffers', 'sync', 'dispose']);

/**
 * Bytes a handle holds: backend-cpu's handles hold their typed array (`values`); backend-webgpu's say
 * `size` elements of `dtype`. 0 for anything else.
 */
export function handleBytes(handle: unknown): number {
  const h = handle as { values?: unknown; size?: unknown; dtype?: unknown } | null;
  if (h?.values && ArrayBuffer.isView(h.values)) return h.values.byteLength;
  if (typeof h?.size === 'number' && typeof h.dtype === 'string' && h.dtype in BYTES_PER_ELEMENT)
    return h.size * BYTES_PER_ELEMENT[h.dtype as DType];
  return 0;
}

export interface HandleWatcher {
  /** Before each backend call that may create a handle: the method's name and its arguments. */
  call?(op: string, args: readonly unknown[]): void;
  /** A handle of `bytes` > 0 that the backend returned for the first time. */
  created?(handle: object, bytes: number, op: string): void;
  /** A handle about to be released. */
  released?(handle: object): void;
}

/** `inner` with every new handle and every release reported to `watcher`. */
export function watchHandles(inner: Backend, watcher: HandleWatcher): Backend {
  const seen = new WeakSet<object>();
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const method = value as (...a: unknown[]) => unknown;
      if (prop === 'release') {
        return (handle: object) => {
          watcher.released?.(handle);
          seen.delete(handle);
          return method.call(target, handle);
        };
      }
      if (NOT_HANDLES.has(String(prop))) return method.bind(target);
      const op = String(prop);
      return (...args: unknown[]) => {
        watcher.call?.(op, args);
        const out = method.apply(target, args);
        if (out !== null && typeof out === 'object' && !seen.has(out)) {
          const bytes = handleBytes(out);
          if (bytes > 0) {
            seen.add(out);
            watcher.created?.(out, bytes, op);
          }
        }
        return out;
      };
    },
  });
}
