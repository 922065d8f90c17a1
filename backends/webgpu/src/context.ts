/** What every kernel function receives: the runtime, device capabilities and tuning knobs. */
import type { DType } from '@dorajs/core';
import type { GpuBuffer } from './buffer-pool.js';
import type { GpuRuntime } from './runtime.js';
import { storageBytes } from './storage.js';

/** The backend's storage handle: one pooled buffer holding `size` elements of `dtype`. */
export interface GpuTensor {
  readonly buf: GpuBuffer;
  readonly dtype: DType;
  readonly size: number;
}

export type MatmulVariant = 'auto' | 'tiled' | 'gemv' | 'smallK';

export interface KernelOptions {
  /** Forces one matmul program for every shape (tests, benchmarks). */
  matmulVariant: MatmulVariant;
  /** Use subgroup operations where the device has them. */
  readonly subgroups: boolean;
}

export class KernelContext {
  live = 0;

  constructor(
    readonly rt: GpuRuntime,
    readonly options: KernelOptions,
  ) {}

  get maxInvocations(): number {
    return this.rt.limits.maxComputeInvocationsPerWorkgroup;
  }

  get maxWorkgroupStorage(): number {
    return this.rt.limits.maxComputeWorkgroupStorageSize;
  }

  alloc(dtype: DType, size: number): GpuTensor {
    const buf = this.rt.pool.acquire(storageBytes(dtype, size));
    this.live++;
    return { buf, dtype, size };
  }

  /** A scratch buffer that is not a tensor (released with `releaseScratch`). */
  scratch(bytes: number): GpuBuffer {
    return this.rt.pool.acquire(bytes);
  }

  releaseScratch(buf: GpuBuffer): void {
    this.rt.pool.release(buf);
  }

  release(t: GpuTensor): void {
    this.live--;
    this.rt.pool.release(t.buf);
  }
}
