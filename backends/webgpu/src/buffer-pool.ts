/**
 * Reuses GPU buffers by size class. A released buffer may still be read by dispatches that are encoded
 * but not yet submitted, and `queue.writeBuffer` into it would land *before* them; so releases are parked
 * until the next submit and only then become reusable.
 */
import { BufferUsage } from './gpu-constants.js';

export interface GpuBuffer {
  readonly buffer: GPUBuffer;
  /** Allocated bytes (the size class, ≥ the bytes asked for). */
  readonly size: number;
  /** Stable identity for bind-group cache keys. */
  readonly id: number;
}

const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

/** Rounds up to a quarter of the enclosing power of two (≤ 25% waste), with a 256-byte floor. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const pow = 2 ** Math.floor(Math.log2(bytes - 1));
  const step = Math.max(256, pow / 4);
  return Math.ceil(bytes / step) * step;
}

export interface PoolStats {
  /** Buffers created by the device since the start. */
  created: number;
  /** Bytes of all buffers currently owned by the pool (in use and free). */
  ownedBytes: number;
  /** Largest byte count requested since `resetLargestRequest`. */
  largestRequest: number;
}

export class BufferPool {
  private readonly free = new Map<number, GpuBuffer[]>();
  private parked: GpuBuffer[] = [];
  private freeBytes = 0;
  /** Bytes of released buffers waiting for the next submit. */
  parkedBytes = 0;
  private nextId = 1;
  readonly stats: PoolStats = { created: 0, ownedBytes: 0, largestRequest: 0 };

  constructor(
    private readonly create: (size: number, usage: number) => GPUBuffer,
    /** Free bytes kept for reuse; beyond this, released buffers are destroyed. */
    private readonly maxFreeBytes: number,
    private readonly onDestroy: () => void,
  ) {}

  acquire(bytes: number): GpuBuffer {
    if (bytes > this.stats.largestRequest) this.stats.largestRequest = bytes;
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.freeBytes -= size;
      return reused;
    }
    const buffer = this.create(size, STORAGE_USAGE);
    this.stats.created++;
    this.stats.ownedBytes += size;
    return { buffer, size, id: this.nextId++ };
  }

  /** The buffer becomes reusable after the next submit (see the file comment). */
  release(buf: GpuBuffer): void {
    this.parked.push(buf);
    this.parkedBytes += buf.size;
  }

  /** Called right after a queue submit; buffers `stillNeeded` accepts (by unrecorded work) stay parked. */
  afterSubmit(stillNeeded?: (buf: GpuBuffer) => boolean): void {
    if (this.parked.length === 0) return;
    let destroyed = false;
    const keep: GpuBuffer[] = [];
    for (const buf of this.parked) {
      if (stillNeeded?.(buf)) {
        keep.push(buf);
        continue;
      }
      if (this.freeBytes + buf.size > this.maxFreeBytes) {
        buf.buffer.destroy();
        this.stats.ownedBytes -= buf.size;
        destroyed = true;
        continue;
      }
      let list = this.free.get(buf.size);
      if (!list) this.free.set(buf.size, (list = []));
      list.push(buf);
      this.freeBytes += buf.size;
    }
    this.parked = keep;
    this.parkedBytes = keep.reduce((n, b) => n + b.size, 0);
    if (destroyed) this.onDestroy();
  }

  /** Destroys every buffer the pool holds that is not in use. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.buffer.destroy();
    this.stats.ownedBytes -= this.freeBytes;
    this.free.clear();
    this.freeBytes = 0;
    this.onDestroy();
  }
}
