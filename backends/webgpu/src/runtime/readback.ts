/** Staging buffers for readback, reused across reads of similar sizes. */
import { BufferUsage, MapModeRead } from '../gpu-constants.js';

/**
 * Largest staging buffer kept for reuse. A larger one (a whole weight read back) is destroyed as soon as
 * its bytes are copied out: a mappable buffer is host memory (in a browser, shared memory mapped into the
 * page and the GPU process), which garbage collection may not reclaim for a long time.
 */
const KEEP_BYTES = 4 * 2 ** 20;

export class StagingBuffers {
  private readonly free: GPUBuffer[] = [];

  constructor(private readonly createBuffer: (size: number, usage: number) => GPUBuffer) {}

  /** A mappable buffer of at least `size` bytes (at most twice that, so a small read does not hold a large one). */
  take(size: number): GPUBuffer {
    const i = this.free.findIndex((b) => b.size >= size && b.size <= size * 2);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    return this.createBuffer(Math.max(256, size), BufferUsage.MAP_READ | BufferUsage.COPY_DST);
  }

  /**
   * Maps `staging` (after the copy into it was submitted) and returns its first `bytes`; the buffer goes
   * back to the free list (destroyed when larger than KEEP_BYTES), or is destroyed when mapping fails (the error is rethrown as is).
   */
  async download(staging: GPUBuffer, size: number, bytes: number): Promise<ArrayBuffer> {
    try {
      await staging.mapAsync(MapModeRead, 0, size);
    } catch (e) {
      staging.destroy();
      throw e;
    }
    const out = staging.getMappedRange(0, size).slice(0, bytes);
    staging.unmap();
    if (staging.size <= KEEP_BYTES) this.free.push(staging);
    else staging.destroy();
    return out;
  }

  destroy(): void {
    for (const s of this.free) s.destroy();
    this.free.length = 0;
  }
}
