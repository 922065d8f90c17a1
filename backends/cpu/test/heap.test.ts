import { describe, expect, it } from 'vitest';
import { HeapAllocator } from '../src/wasm/heap.js';

/** A fake memory that grows by pages up to a limit, like WebAssembly.Memory. */
function memory(pages: number, maxPages: number) {
  let buffer = new ArrayBuffer(pages * 65536);
  return {
    get buffer() {
      return buffer;
    },
    grow(n: number) {
      const old = buffer.byteLength / 65536;
      if (old + n > maxPages) throw new RangeError('cannot grow');
      buffer = new ArrayBuffer((old + n) * 65536);
      return old;
    },
  };
}

describe('wasm heap allocator', () => {
  it('hands out aligned, disjoint blocks above the reserved base', () => {
    const h = new HeapAllocator(memory(1, 4), 100, 4 * 65536);
    const blocks = [3, 64, 65, 1000, 1].map((n) => [h.alloc(n)!, n] as const);
    for (const [p] of blocks) {
      expect(p % 64).toBe(0);
      expect(p).toBeGreaterThanOrEqual(100);
    }
    const sorted = [...blocks].sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]![0]).toBeGreaterThanOrEqual(sorted[i - 1]![0] + sorted[i - 1]![1]);
  });

  it('reuses freed space, coalescing neighbours, and lowers the top when the last block goes', () => {
    const h = new HeapAllocator(memory(1, 4), 0, 4 * 65536);
    const a = h.alloc(1000)!;
    const b = h.alloc(1000)!;
    const c = h.alloc(1000)!;
    const top = h.used;
    h.free(a, 1000);
    h.free(b, 1000);
    // a and b merged: a block of 2000 fits where they were.
    expect(h.alloc(2000)).toBe(a);
    h.free(a, 2000);
    h.free(c, 1000);
    expect(h.used).toBeLessThan(top);
    expect(h.used).toBe(a);
    expect(h.allocatedBytes).toBe(0);
  });

  it('splits a larger free block and keeps the remainder', () => {
    const h = new HeapAllocator(memory(1, 4), 0, 4 * 65536);
    const big = h.alloc(64 * 100)!;
    const guard = h.alloc(64)!;
    h.free(big, 64 * 100);
    const small = h.alloc(64 * 10)!;
    expect(small).toBe(big);
    const rest = h.alloc(64 * 90)!;
    expect(rest).toBe(big + 64 * 10);
    expect(guard).toBe(big + 64 * 100);
  });

  it('grows the memory when it must and returns null past the maximum', () => {
    const mem = memory(1, 3);
    const h = new HeapAllocator(mem, 0, 3 * 65536);
    expect(h.alloc(100_000)).not.toBeNull();
    expect(mem.buffer.byteLength).toBeGreaterThanOrEqual(100_000);
    expect(h.alloc(200_000)).toBeNull();
    expect(h.alloc(50_000)).not.toBeNull();
  });
});
