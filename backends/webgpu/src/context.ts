/** What every kernel function receives: the runtime, device capabilities and tuning knobs. */
import type { DType } from '@dorajs/core';
import { sizeClass, type GpuBuffer } from './buffer-pool.js';
import type { GpuRuntime } from './runtime.js';
import { storageBytes } from './storage.js';
import type { BoundType } from './wgsl/common.js';

/**
 * The backend's storage handle: one pooled buffer holding `size` elements of `dtype`, or, for a tensor
 * larger than one buffer, a `SplitTensor` (`split.ts`) whose `buf` throws.
 */
export interface GpuTensor {
  readonly buf: GpuBuffer;
  readonly dtype: DType;
  readonly size: number;
  /** Set by `release` (a field, not a WeakSet: it is checked on every kernel call). */
  released?: boolean;
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
  /** Bind float16 weights as `array<f16>` (the device has `shader-f16`); else as packed u32 words. */
  shaderF16: boolean;
  /** Defer matmuls so that a following doraCompose / weightNorm can fold into them. */
  fuse: boolean;
  /** Tuning overrides (tests, benchmarks, tuning runs), see `setTuning`. */
  tuning: MatmulTuning;
}

export interface MatmulTuning {
  /** Tiled program blocking `TMxTNxBK` (TM, TN ∈ {4, 8}), e.g. '8x8x8'. */
  tile?: string;
  /** K slices of the tiled program (1: no split). */
  splitK?: number;
  /** Rows per workgroup of the row-streaming GEMV / weight-norm programs (1, 2, 4, 8 or 16). */
  rows?: number;
  /** Workgroups the `tiles` weight-norm program aims for (it splits the input dimension to get them). */
  normWorkgroups?: number;
}

export class KernelContext {
  live = 0;
  private readonly scratchFree = new Map<number, GpuBuffer[]>();

  constructor(
    readonly rt: GpuRuntime,
    readonly options: KernelOptions,
    /** Bytes one part of a split tensor may hold (see `split.ts`): the device's limits or `maxBufferBytes`. */
    readonly partBytes: number,
  ) {}

  /** How programs bind a tensor of `dtype`: float16 as 'f16' where `shaderF16` is on (see `BoundType`). */
  bound(dtype: DType): BoundType {
    return dtype === 'float16' && this.options.shaderF16 ? 'f16' : dtype;
  }

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

  /** Storage for a loaded weight (`beginUpload`): not pooled, packed tightly (see `buffer-pool.ts`). */
  allocUpload(dtype: DType, size: number): GpuTensor {
    const buf = this.rt.pool.acquireUpload(storageBytes(dtype, size));
    this.live++;
    return { buf, dtype, size };
  }

  /**
   * A scratch buffer that is not a tensor (released with `releaseScratch`). Scratch is only ever written
   * and read by dispatches, never by the host, and dispatches run in order, so a released scratch buffer
   * is reusable at once, within the same batch: kernels with a partial-sum pass (split-K, the tiles weight
   * norm) then use one buffer per size instead of a new one per call.
   */
  scratch(bytes: number): GpuBuffer {
    const size = sizeClass(bytes);
    const reused = this.scratchFree.get(size)?.pop();
    return reused ?? this.rt.pool.acquire(bytes);
  }

  releaseScratch(buf: GpuBuffer): void {
    let list = this.scratchFree.get(buf.size);
    if (!list) this.scratchFree.set(buf.size, (list = []));
    list.push(buf);
  }

  /** Hands the scratch buffers back to the pool (which parks them until the next submit). */
  dropScratch(): void {
    for (const list of this.scratchFree.values()) for (const b of list) this.rt.pool.release(b);
    this.scratchFree.clear();
  }

  release(t: GpuTensor): void {
    this.live--;
    this.rt.pool.release(t.buf);
  }
}
