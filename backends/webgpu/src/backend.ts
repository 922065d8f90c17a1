/**
 * `WebGpuBackend`: the Backend contract on a GPUDevice. Kernels record dispatches and return handles
 * at once; nothing waits for the GPU until `download` or `sync`.
 */
import {
  allocFor,
  BYTES_PER_ELEMENT,
  ShapeError,
  type Backend,
  type BackendCapabilities,
  type BinaryOp,
  type Conv2dParams,
  type DType,
  type MatMulOptions,
  type ReduceOp,
  type TensorInfo,
  type TypedArrayFor,
  type UnaryOp,
  type WeightNormOptions,
  DoraError,
} from '@dorajs/core';
import type { PoolStats } from './buffer-pool.js';
import {
  environmentOptions,
  KernelContext,
  type GpuTensor,
  type MatmulTuning,
  type MatmulVariant,
  type WeightNormVariant,
} from './context.js';
import { acquireDevice, type AcquiredDevice, type DeviceRequest } from './device.js';
import { conv2d, conv2dBackpropFilter, conv2dBackpropInput } from './kernels/conv2d.js';
import { doraCompose } from './kernels/dora-compose.js';
import { affine, binary, fill, unary, where, type TensorArg } from './kernels/elementwise.js';
import { cast, concat, gather, scatterAdd, slice, transpose } from './kernels/layout.js';
import { matmul } from './kernels/matmul.js';
import { argMax, reduce, softmax } from './kernels/reduce.js';
import { weightNorm } from './kernels/weight-norm.js';
import { GpuRuntime, type RuntimeStats } from './runtime.js';
import { sizeOf } from './shapes.js';
import { assertKnownDType } from './storage.js';

export interface WebGpuBackendOptions extends DeviceRequest {
  /** Use this device instead of finding one (it is not destroyed on dispose unless `destroyDevice`). */
  readonly device?: GPUDevice;
  /** Destroy the device on dispose (default: true for devices the backend found, false for injected ones). */
  readonly destroyDevice?: boolean;
  /** Force one matmul program for every shape; also `DORA_WEBGPU_MATMUL=tiled|gemv|smallK`. */
  readonly matmulVariant?: MatmulVariant;
  /** Force one weight-norm program where it applies; also `DORA_WEBGPU_WN=rows|tiles`. */
  readonly weightNormVariant?: WeightNormVariant;
  /**
   * Fold a `doraCompose` into the matmul that produced its base, and a `weightNorm` into a GEMV over the
   * same W, by deferring matmuls until their result is read (default true; `DORA_WEBGPU_FUSE=0` disables).
   */
  readonly fuse?: boolean;
  /** Free buffer bytes kept for reuse (default 1 GiB). */
  readonly maxPoolBytes?: number;
  /** Bytes of each of the 4 uniform arenas holding kernel parameters (default 256 KiB; small in tests). */
  readonly uniformArenaBytes?: number;
}

export interface WebGpuStats extends RuntimeStats, PoolStats {
  readonly liveTensors: number;
}

const ALL_DTYPES: readonly DType[] = ['float32', 'int32', 'bfloat16', 'float16', 'int8', 'uint8'];

export class WebGpuBackend implements Backend<GpuTensor> {
  readonly name = 'webgpu';
  readonly capabilities: BackendCapabilities;
  private readonly rt: GpuRuntime;
  private readonly ctx: KernelContext;
  private readonly envTuning: MatmulTuning;

  constructor(
    readonly device: GPUDevice,
    /** How the device was found (adapter and path), worth printing. */
    readonly description: string,
    private readonly destroyDevice: boolean,
    options: WebGpuBackendOptions = {},
  ) {
    // A CPU rasterizer behind WebGPU (Mesa llvmpipe, SwiftShader) is slower than the CPU backend: 'auto' skips it.
    this.capabilities = { dtypes: ALL_DTYPES, offHost: true, software: /llvmpipe|swiftshader|lavapipe|softpipe/i.test(description) };
    this.rt = new GpuRuntime(device, { maxPoolBytes: options.maxPoolBytes, uniformArenaBytes: options.uniformArenaBytes });
    const env = environmentOptions();
    this.envTuning = env.tuning;
    this.ctx = new KernelContext(this.rt, {
      matmulVariant: options.matmulVariant ?? env.matmulVariant ?? 'auto',
      weightNormVariant: options.weightNormVariant ?? env.weightNormVariant ?? 'auto',
      subgroups: (options.subgroups ?? true) && device.features.has('subgroups'),
      fuse: options.fuse ?? (typeof process === 'undefined' || process.env?.DORA_WEBGPU_FUSE !== '0'),
      tuning: { ...env.tuning },
    });
  }

  /** Counters for tests and benchmarks: dispatches, submits, readbacks, pipelines, buffer allocations. */
  stats(): WebGpuStats {
    return { ...this.rt.stats, ...this.rt.pool.stats, liveTensors: this.ctx.live };
  }

  /** Restarts the "largest buffer requested" watermark (see `stats().largestRequest`). */
  resetLargestRequest(): void {
    this.rt.pool.stats.largestRequest = 0;
  }

  /** Forces one matmul program from now on ('auto' restores the choice by shape). */
  setMatmulVariant(variant: MatmulVariant): void {
    this.ctx.options.matmulVariant = variant;
  }

  /** Forces one weight-norm program from now on ('auto' restores the choice by shape). */
  setWeightNormVariant(variant: WeightNormVariant): void {
    this.ctx.options.weightNormVariant = variant;
  }

  /**
   * Overrides the programs' blocking (tests, tuning runs); `{}` restores the defaults (those the
   * environment gave at creation: `DORA_WEBGPU_TILE`, `DORA_WEBGPU_SPLITK`, `DORA_WEBGPU_ROWS`, ...).
   */
  setTuning(tuning: MatmulTuning): void {
    this.rt.flushDeferred();
    this.ctx.options.tuning = { ...this.envTuning, ...tuning };
  }

  /** Turns lazy fusion (see `WebGpuBackendOptions.fuse`) on or off; deferred work is recorded first. */
  setFusion(on: boolean): void {
    this.rt.flushDeferred();
    this.ctx.options.fuse = on;
  }

  /** Whether subgroup operations are in use (the device has `subgroups` and they were not turned off). */
  get usesSubgroups(): boolean {
    return this.ctx.options.subgroups;
  }

  /** Submits recorded work without waiting for it. */
  flush(): void {
    this.rt.flush();
  }

  private arg(t: TensorInfo<GpuTensor>): TensorArg {
    if (t.data.released) throw new DoraError(`webgpu: tensor [${t.shape.join(', ')}] used after release`);
    return { t: t.data, shape: t.shape };
  }

  // ---- storage

  upload(values: TypedArrayFor<DType>, shape: readonly number[], dtype: DType): GpuTensor {
    assertKnownDType(dtype, 'upload');
    const size = sizeOf(shape);
    if (values.length !== size) throw new ShapeError(`webgpu upload: ${values.length} values for shape [${shape.join(', ')}]`);
    if (values.BYTES_PER_ELEMENT !== BYTES_PER_ELEMENT[dtype]) {
      throw new ShapeError(`webgpu upload: a ${values.constructor.name} cannot hold ${dtype}`);
    }
    this.rt.check();
    const t = this.ctx.alloc(dtype, size);
    this.rt.write(t.buf, values);
    return t;
  }

  async download(t: TensorInfo<GpuTensor>): Promise<TypedArrayFor<DType>> {
    const { t: h } = this.arg(t);
    const bytes = h.size * BYTES_PER_ELEMENT[h.dtype];
    const out = allocFor(h.dtype, h.size);
    if (h.size === 0) return out as TypedArrayFor<DType>;
    const data = await this.rt.read(h.buf, bytes);
    new Uint8Array(out.buffer).set(new Uint8Array(data));
    return out as TypedArrayFor<DType>;
  }

  release(data: GpuTensor): void {
    if (data.released) return;
    data.released = true;
    this.ctx.release(data);
  }

  liveBuffers(): number {
    return this.ctx.live;
  }

  fill(shape: readonly number[], value: number, dtype: DType): GpuTensor {
    assertKnownDType(dtype, 'fill');
    this.rt.check();
    return fill(this.ctx, shape, value, dtype);
  }

  // ---- kernels

  matmul(a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, options: MatMulOptions, outShape: readonly number[]): GpuTensor {
    return matmul(this.ctx, this.arg(a), this.arg(b), options, outShape);
  }

  binary(op: BinaryOp, a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, outShape: readonly number[]): GpuTensor {
    return binary(this.ctx, op, this.arg(a), this.arg(b), outShape);
  }

  unary(op: UnaryOp, a: TensorInfo<GpuTensor>): GpuTensor {
    return unary(this.ctx, op, this.arg(a));
  }

  affine(a: TensorInfo<GpuTensor>, scale: number, offset: number): GpuTensor {
    return affine(this.ctx, this.arg(a), scale, offset);
  }

  where(cond: TensorInfo<GpuTensor>, a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, outShape: readonly number[]): GpuTensor {
    return where(this.ctx, this.arg(cond), this.arg(a), this.arg(b), outShape);
  }

  reduce(op: ReduceOp, a: TensorInfo<GpuTensor>, axes: readonly number[], outShape: readonly number[]): GpuTensor {
    return reduce(this.ctx, op, this.arg(a), axes, outShape);
  }

  argMax(a: TensorInfo<GpuTensor>): GpuTensor {
    return argMax(this.ctx, this.arg(a));
  }

  softmax(a: TensorInfo<GpuTensor>, log: boolean): GpuTensor {
    return softmax(this.ctx, this.arg(a), log);
  }

  gather(table: TensorInfo<GpuTensor>, indices: TensorInfo<GpuTensor>): GpuTensor {
    return gather(this.ctx, this.arg(table), this.arg(indices));
  }

  scatterAdd(indices: TensorInfo<GpuTensor>, updates: TensorInfo<GpuTensor>, numRows: number): GpuTensor {
    return scatterAdd(this.ctx, this.arg(indices), this.arg(updates), numRows);
  }

  transpose(a: TensorInfo<GpuTensor>, perm: readonly number[]): GpuTensor {
    return transpose(this.ctx, this.arg(a), perm);
  }

  slice(a: TensorInfo<GpuTensor>, begin: readonly number[], size: readonly number[]): GpuTensor {
    return slice(this.ctx, this.arg(a), begin, size);
  }

  concat(tensors: readonly TensorInfo<GpuTensor>[], axis: number, outShape: readonly number[]): GpuTensor {
    return concat(
      this.ctx,
      tensors.map((t) => this.arg(t)),
      axis,
      outShape,
    );
  }

  cast(a: TensorInfo<GpuTensor>, dtype: DType): GpuTensor {
    assertKnownDType(dtype, 'cast');
    return cast(this.ctx, this.arg(a), dtype);
  }

  conv2d(x: TensorInfo<GpuTensor>, w: TensorInfo<GpuTensor>, p: Conv2dParams, outShape: readonly number[]): GpuTensor {
    return conv2d(this.ctx, this.arg(x), this.arg(w), p, outShape);
  }

  conv2dBackpropInput(dy: TensorInfo<GpuTensor>, w: TensorInfo<GpuTensor>, p: Conv2dParams, xShape: readonly number[]): GpuTensor {
    return conv2dBackpropInput(this.ctx, this.arg(dy), this.arg(w), p, xShape);
  }

  conv2dBackpropFilter(x: TensorInfo<GpuTensor>, dy: TensorInfo<GpuTensor>, p: Conv2dParams, wShape: readonly number[]): GpuTensor {
    return conv2dBackpropFilter(this.ctx, this.arg(x), this.arg(dy), p, wShape);
  }

  // ---- fused

  weightNorm(
    w: TensorInfo<GpuTensor>,
    a: TensorInfo<GpuTensor>,
    b: TensorInfo<GpuTensor>,
    scale: number,
    options: WeightNormOptions,
  ): GpuTensor {
    return weightNorm(this.ctx, this.arg(w), this.arg(a), this.arg(b), scale, options);
  }

  doraCompose(
    base: TensorInfo<GpuTensor>,
    lora: TensorInfo<GpuTensor>,
    g: TensorInfo<GpuTensor>,
    scale: number,
    bias: TensorInfo<GpuTensor> | null,
  ): GpuTensor {
    return doraCompose(this.ctx, this.arg(base), this.arg(lora), this.arg(g), scale, bias ? this.arg(bias) : null);
  }

  // ---- lifecycle

  sync(): Promise<void> {
    return this.rt.sync();
  }

  dispose(): void {
    this.ctx.dropScratch();
    this.rt.dispose(this.destroyDevice);
  }
}

/**
 * Creates the WebGPU backend on an injected device, or on the first device found (see `acquireDevice`):
 * `navigator.gpu` in browsers; in Node, Dawn's default backend, then Dawn's OpenGL ES backend in
 * compatibility mode. Throws `WebGpuUnavailableError` when there is none.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  if (options.device) {
    return new WebGpuBackend(options.device, 'injected device', options.destroyDevice ?? false, options);
  }
  const found: AcquiredDevice = await acquireDevice(options);
  return new WebGpuBackend(found.device, `${found.description}: ${found.adapterInfo}`, options.destroyDevice ?? true, options);
}
