/** Staging buffers for readback, reused across reads of similar sizes. */
import { BufferUsage, MapModeRead } from '../gpu-constants.js';

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
   * back to the free list, or is destroyed when mapping fails (the error is rethrown as is).
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
    this.free.push(staging);
    return out;
  }

  destroy(): void {
    for (const s of this.free) s.destroy();
    this.free.length = 0;
  }
}
