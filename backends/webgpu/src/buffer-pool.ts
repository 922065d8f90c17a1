/**
 * Reuses GPU buffers by size class. A released buffer may still be read by dispatches that are encoded
 * but not yet submitted, and `queue.writeBuffer` into it would land *before* them; so releases are parked
 * until the next submit and only then become reusable.
 *
 * Loaded weights (`acquireUpload`) are not pooled: they live long, so they get what they need and no more.
 * Dawn places a buffer of at most 4 MiB in a shared heap at a power-of-two size (its buddy allocator: a 3 MiB
 * weight takes 4 MiB, a 1.1 MiB one 2 MiB), and that whole heap is memory from the start (on SwiftShader, RAM
 * of the GPU process). So a weight of at most 4 MiB is a range of a slab, an 8 MiB buffer of ours filled
 * first-fit at 256-byte offsets (bound with offset and size), and a larger one gets a buffer of its own size
 * (Dawn allocates those as they are). Ranges are read-only inputs of kernels (never outputs, which could not
 * share a buffer with an input of the same dispatch); a slab is destroyed once its last range is released, a
 * freed range is not reused.
 *
 * Fixed 8 MiB slabs filled first-fit leave holes (3 MiB MLP weights leave 2 MiB that the next 3 MiB one
 * skips) and an unused tail in the last slab: 104 MiB of slabs for the web-load model's 96 MiB of ranges. A
 * loader that knows what comes (`planSlabs`, from `planUploads`: every tensor's size is in the checkpoint's
 * header) gets slabs cut to measure instead: the planned ranges, in order, go into consecutive slabs, each as
 * large as the ranges that fit in SLAB_BYTES from where it starts (so above SLAB_RANGE_MAX, Dawn allocating it
 * as it is; a rest of at most SLAB_RANGE_MAX joins the slab before it), and full. A request that is not the
 * next planned one drops the plan.
 */
import { BufferUsage } from './gpu-constants.js';

export interface GpuBuffer {
  readonly buffer: GPUBuffer;
  /** Allocated bytes (the size class, ≥ the bytes asked for). */
  readonly size: number;
  /** Stable identity for bind-group cache keys. */
  readonly id: number;
  /** Where this storage starts in `buffer` (a range of a slab); absent: the whole buffer. */
  readonly offset?: number;
  /** Not pooled (`acquireUpload`): the slab it is a range of, or 'own' for a buffer of its own. */
  readonly unpooled?: Slab | 'own';
}

/** A buffer holding several loaded weights as ranges (see the file comment). */
export interface Slab {
  readonly buffer: GPUBuffer;
  readonly size: number;
  /** Bytes handed out from the start (ranges are never reused). */
  used: number;
  /** Ranges not yet released. */
  live: number;
}

/** Largest weight placed in a slab: Dawn gives larger buffers an allocation of their own size. */
export const SLAB_RANGE_MAX = 4 * 2 ** 20;
/**
 * Bytes of one slab: above SLAB_RANGE_MAX, so Dawn allocates it as it is, and small, as the last slab's free
 * tail is memory too (16 MiB slabs left 16 MiB unused after the web-load model, 8 MiB ones 8 MiB).
 */
export const SLAB_BYTES = 8 * 2 ** 20;
/** Offsets and sizes of ranges: minStorageBufferOffsetAlignment is at most 256 on every device. */
const RANGE_ALIGN = 256;

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
  /** Slabs with room left, in creation order (first fit). */
  private open: Slab[] = [];
  /** Range sizes announced by `planSlabs` (`slabBytes`, in order), the next one's index, and its slab. */
  private plan: number[] = [];
  private planAt = 0;
  private planSlab: Slab | null = null;
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

  /**
   * Storage for a loaded weight of `bytes` (see the file comment): a range of a slab, or a buffer of its own;
   * bound by offset and size, and freed on release instead of pooled.
   */
  acquireUpload(bytes: number): GpuBuffer {
    if (bytes > this.stats.largestRequest) this.stats.largestRequest = bytes;
    const size = Math.max(RANGE_ALIGN, Math.ceil(bytes / RANGE_ALIGN) * RANGE_ALIGN);
    if (size > SLAB_RANGE_MAX) {
      const buffer = this.create(size, STORAGE_USAGE);
      this.stats.created++;
      this.stats.ownedBytes += size;
      return { buffer, size, id: this.nextId++, offset: 0, unpooled: 'own' };
    }
    let slab: Slab | undefined;
    if (this.planAt < this.plan.length && this.plan[this.planAt] === size) {
      this.planAt++;
      slab = this.planSlab ?? undefined;
      if (!slab || slab.used + size > slab.size) {
        // This range and the planned ones after it that fit in one slab; and the rest of the plan too when
        // that is at most SLAB_RANGE_MAX, which would be a slab Dawn rounds up to a power of two.
        let total = size;
        let i = this.planAt;
        for (; i < this.plan.length && total + this.plan[i]! <= SLAB_BYTES; i++) total += this.plan[i]!;
        let rest = 0;
        for (let j = i; j < this.plan.length && rest <= SLAB_RANGE_MAX; j++) rest += this.plan[j]!;
        if (rest <= SLAB_RANGE_MAX) total += rest;
        slab = this.planSlab = this.newSlab(total);
      }
    } else {
      if (this.plan.length > 0) this.planSlabs([]);
      slab = this.open.find((s) => s.used + size <= s.size) ?? this.newSlab(SLAB_BYTES);
    }
    const offset = slab.used;
    slab.used += size;
    slab.live++;
    if (slab.size - slab.used < RANGE_ALIGN) this.open = this.open.filter((s) => s !== slab);
    return { buffer: slab.buffer, size, id: this.nextId++, offset, unpooled: slab };
  }

  /**
   * Bytes a loaded weight of `bytes` takes in a slab (`acquireUpload`): its 256-aligned size, or 0 when it
   * gets a buffer of its own.
   */
  static slabBytes(bytes: number): number {
    const size = Math.max(RANGE_ALIGN, Math.ceil(bytes / RANGE_ALIGN) * RANGE_ALIGN);
    return size > SLAB_RANGE_MAX ? 0 : size;
  }

  /**
   * A loader's hint (see the file comment): `acquireUpload` will be asked next for weights of these byte
   * counts, in order (those that get a buffer of their own may be left in or out). Replaces an earlier plan.
   */
  planSlabs(bytes: readonly number[]): void {
    this.plan = bytes.map(BufferPool.slabBytes).filter((n) => n > 0);
    this.planAt = 0;
    this.planSlab = null;
  }

  private newSlab(bytes: number): Slab {
    const slab: Slab = { buffer: this.create(bytes, STORAGE_USAGE), size: bytes, used: 0, live: 0 };
    this.stats.created++;
    this.stats.ownedBytes += bytes;
    this.open.push(slab);
    return slab;
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
      if (buf.unpooled) {
        if (this.freeUnpooled(buf.unpooled, buf)) destroyed = true;
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

  /** Frees an unpooled buffer: its own buffer, or its slab once no range of it is alive. True if destroyed. */
  private freeUnpooled(owner: Slab | 'own', buf: GpuBuffer): boolean {
    if (owner === 'own') {
      buf.buffer.destroy();
      this.stats.ownedBytes -= buf.size;
      return true;
    }
    if (--owner.live > 0) return false;
    if (this.planSlab === owner) this.planSlab = null;
    owner.buffer.destroy();
    this.stats.ownedBytes -= owner.size;
    this.open = this.open.filter((s) => s !== owner);
    return true;
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
