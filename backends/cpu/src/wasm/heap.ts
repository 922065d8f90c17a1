/**
 * The allocator of the wasm heap: tensors live in the kernels' linear memory so every kernel reads and writes
 * them in place (no copy in or out of wasm), and worker threads see the same bytes.
 *
 * Blocks are multiples of 64 bytes, 64-byte aligned (a cache line; v128 accesses never straddle one). Free
 * blocks are coalesced with their neighbours (found through maps keyed by start and end) and kept in bins by
 * size class (floor log2); a request takes the first fit from its own bin (scanning a few entries) or any
 * block of a larger class, and otherwise extends the used region, growing the memory when it must. A block
 * that ends at the top of the used region lowers the top instead of entering a bin. Memory never shrinks
 * (WebAssembly cannot), but freed space is reused.
 */

export const ALIGN = 64;
const PAGE = 65536;
/** Entries of a bin examined for a first fit before looking at larger classes. */
const BIN_SCAN = 8;

export interface GrowableMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}

export class HeapAllocator {
  private top: number;
  private readonly freeByStart = new Map<number, number>();
  private readonly freeByEnd = new Map<number, number>();
  private readonly bins: Set<number>[] = [];
  /** Bytes in allocated blocks (for tests and diagnostics). */
  allocatedBytes = 0;

  constructor(
    private readonly memory: GrowableMemory,
    /** Bytes below this address are reserved (never handed out). */
    base: number,
    /** The most bytes the memory may grow to. */
    readonly maxBytes: number,
  ) {
    this.top = roundUp(base, ALIGN);
  }

  /** A 64-byte aligned block of at least `bytes` bytes, or null when the memory cannot grow that far. */
  alloc(bytes: number): number | null {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    const fit = this.takeFree(size);
    if (fit !== null) {
      this.allocatedBytes += size;
      return fit;
    }
    const ptr = this.top;
    const end = ptr + size;
    if (end > this.memory.buffer.byteLength) {
      if (end > this.maxBytes) return null;
      const have = this.memory.buffer.byteLength;
      // Grow by at least a quarter of what we have, so a run of allocations does not grow page by page.
      const want = Math.min(this.maxBytes, Math.max(end, have + (have >>> 2)));
      try {
        this.memory.grow(Math.ceil((want - have) / PAGE));
      } catch {
        try {
          this.memory.grow(Math.ceil((end - have) / PAGE));
        } catch {
          return null;
        }
      }
    }
    this.top = end;
    this.allocatedBytes += size;
    return ptr;
  }

  /** Returns a block from `alloc` (with the same `bytes`). */
  free(ptr: number, bytes: number): void {
    let start = ptr;
    let size = roundUp(Math.max(bytes, 1), ALIGN);
    this.allocatedBytes -= size;
    const before = this.freeByEnd.get(start);
    if (before !== undefined) {
      const beforeSize = this.freeByStart.get(before)!;
      this.remove(before, beforeSize);
      start = before;
      size += beforeSize;
    }
    const afterSize = this.freeByStart.get(start + size);
    if (afterSize !== undefined) {
      this.remove(start + size, afterSize);
      size += afterSize;
    }
    if (start + size === this.top) this.top = start;
    else this.insert(start, size);
  }

  /** The end of the used region: everything above it is free. */
  get used(): number {
    return this.top;
  }

  private takeFree(size: number): number | null {
    const cls = sizeClass(size);
    const own = this.bins[cls];
    if (own && own.size > 0) {
      let scanned = 0;
      for (const start of own) {
        const have = this.freeByStart.get(start)!;
        if (have >= size) return this.split(start, have, size);
        if (++scanned >= BIN_SCAN) break;
      }
    }
    for (let c = cls + 1; c < this.bins.length; c++) {
      const bin = this.bins[c];
      if (!bin || bin.size === 0) continue;
      const start = bin.values().next().value as number;
      return this.split(start, this.freeByStart.get(start)!, size);
    }
    return null;
  }

  private split(start: number, have: number, size: number): number {
    this.remove(start, have);
    if (have > size) this.insert(start + size, have - size);
    return start;
  }

  private insert(start: number, size: number): void {
    this.freeByStart.set(start, size);
    this.freeByEnd.set(start + size, start);
    const cls = sizeClass(size);
    (this.bins[cls] ??= new Set()).add(start);
  }

  private remove(start: number, size: number): void {
    this.freeByStart.delete(start);
    this.freeByEnd.delete(start + size);
    this.bins[sizeClass(size)]!.delete(start);
  }
}

function sizeClass(size: number): number {
  return 31 - Math.clz32(size);
}

export function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}
