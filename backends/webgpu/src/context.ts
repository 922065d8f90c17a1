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
/** `rows`: one pass streaming W's rows (Linear layout); `tiles`: B·A tiles in workgroup memory, any layout. */
export type WeightNormVariant = 'auto' | 'rows' | 'tiles';

export interface KernelOptions {
  /** Forces one matmul program for every shape (tests, benchmarks). */
  matmulVariant: MatmulVariant;
  /** Forces one weight-norm program where it applies (tests, benchmarks). */
  weightNormVariant: WeightNormVariant;
  /** Use subgroup operations where the device has them. */
  subgroups: boolean;
  /** Defer matmuls so that a following doraCompose / weightNorm can fold into them. */
  fuse: boolean;
  /** Tuning overrides (tests, benchmarks); each also has an environment variable, see `setTuning`. */
  tuning: MatmulTuning;
}

export interface MatmulTuning {
  /** Tiled program blocking `TMxTNxBK` (TM, TN ∈ {4, 8}), e.g. '8x8x8'. */
  tile?: string;
  /** K slices of the tiled program (1: no split). */
  splitK?: number;
  /** Rows per workgroup of the row-streaming GEMV / weight-norm programs (1, 2, 4 or 8). */
  rows?: number;
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
