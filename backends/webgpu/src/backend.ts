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
  type UploadSink,
  type WeightNormOptions,
  type WeightInfo,
  type QuantizedInfo,
  DoraError,
} from '@dorajs/core';
import type { PoolStats } from './buffer-pool.js';
import { KernelContext, type GpuTensor, type MatmulTuning, type MatmulVariant, type WeightNormVariant } from './context.js';
import { acquireDevice, type AcquiredDevice, type DeviceRequest } from './device.js';
import { conv2d, conv2dBackpropFilter, conv2dBackpropInput } from './kernels/conv2d.js';
import { doraCompose } from './kernels/dora-compose.js';
import { affine, binary, binaryOutDType, fill, unary, unaryOutDType, where, type TensorArg } from './kernels/elementwise.js';
import { cast, concat, gather, scatterAdd, slice, transpose } from './kernels/layout.js';
import { matmul, matmulCompose } from './kernels/matmul.js';
import { dequantize, gatherNarrow, matmulNarrow, narrowArg, weightNormNarrow } from './kernels/narrow.js';
import {
  downloadSplit,
  fillSplit,
  gatherSplit,
  mapParts,
  matmulSplit,
  releaseAny,
  rowwise,
  sliceSplit,
  transposeSplit,
  uploadSplit,
  weightNormSplit,
} from './kernels/split.js';
import { argMax, reduce, softmax } from './kernels/reduce.js';
import { matmulWeightNorm, weightNorm } from './kernels/weight-norm.js';
import { writeSlice } from './kernels/write-slice.js';
import { GpuRuntime, type RuntimeStats } from './runtime.js';
import { debugOverrides } from './debug-env.js';
import { sizeOf } from './shapes.js';
import { describeSplit, isSplit, needsSplit, partCapacity } from './split.js';
import { assertKnownDType } from './storage.js';
import { allocStorage, DEFAULT_UPLOAD_WINDOW_BYTES, plannedBuffers, uploadSink, type UploadWindow } from './upload.js';
import { SplitTensorError } from './errors.js';

export interface WebGpuBackendOptions extends DeviceRequest {
  /** Use this device instead of finding one (it is not destroyed on dispose unless `destroyDevice`). */
  readonly device?: GPUDevice;
  /** Destroy the device on dispose (default: true for devices the backend found, false for injected ones). */
  readonly destroyDevice?: boolean;
  /** Force one matmul program for every shape (default 'auto': chosen by shape). */
  readonly matmulVariant?: MatmulVariant;
  /** Force one weight-norm program where it applies (default 'auto'). */
  readonly weightNormVariant?: WeightNormVariant;
  /**
   * Serve the fused DoRA kernels core asks for (`matmulCompose`: the compose in the matmul's epilogue;
   * `matmulWeightNorm`: a GEMV and the norm from one read of W) in one dispatch; off, they run as separate
   * programs (default true).
   */
  readonly fuse?: boolean;
  /** The programs' blocking and work splits (default: chosen by shape); see `setTuning`. */
  readonly tuning?: MatmulTuning;
  /** Print every compiled program's WGSL to stderr (default false). */
  readonly dumpShaders?: boolean;
  /** Free buffer bytes kept for reuse (default 1 GiB). */
  readonly maxPoolBytes?: number;
  /** Bytes of each of the 4 uniform arenas holding kernel parameters (default 256 KiB; small in tests). */
  readonly uniformArenaBytes?: number;
  /**
   * Largest buffer a tensor may occupy (default and cap: the device's `maxBufferSize` and
   * `maxStorageBufferBindingSize`); larger tensors are stored over several buffers (see `split.ts`).
   * Small in tests, to exercise splitting.
   */
  readonly maxBufferBytes?: number;
  /**
   * Bytes `beginUpload` writes (a streaming loader) before waiting for the queue to execute them (default
   * 16 MiB; Infinity: never wait). Until the queue runs a `writeBuffer`, the implementation holds a copy of
   * its bytes (Dawn's staging; in a browser also the GPU process's), so this bounds that second copy.
   */
  readonly uploadWindowBytes?: number;
}

export interface WebGpuStats extends RuntimeStats, PoolStats {
  readonly liveTensors: number;
  /** Times a `beginUpload` write waited for the queue to drain (see `uploadWindowBytes`). */
  readonly uploadWaits: number;
}

const ALL_DTYPES: readonly DType[] = ['float32', 'int32', 'bfloat16', 'float16', 'int8', 'uint8'];

export class WebGpuBackend implements Backend<GpuTensor> {
  readonly name = 'webgpu';
  readonly capabilities: BackendCapabilities;
  private readonly rt: GpuRuntime;
  private readonly ctx: KernelContext;
  /** The tuning `setTuning({})` restores: the options', over the debugging overrides (debug-env.ts). */
  private readonly baseTuning: MatmulTuning;
  private readonly uploads: UploadWindow;

  constructor(
    readonly device: GPUDevice,
    /** How the device was found (adapter and path), worth printing. */
    readonly description: string,
    private readonly destroyDevice: boolean,
    options: WebGpuBackendOptions = {},
  ) {
    // A CPU rasterizer behind WebGPU (Mesa llvmpipe, SwiftShader) is slower than the CPU backend: 'auto' skips it.
    this.capabilities = { dtypes: ALL_DTYPES, offHost: true, software: /llvmpipe|swiftshader|lavapipe|softpipe/i.test(description) };
    const debug = debugOverrides();
    this.rt = new GpuRuntime(device, {
      maxPoolBytes: options.maxPoolBytes,
      uniformArenaBytes: options.uniformArenaBytes,
      dumpShaders: options.dumpShaders ?? debug.dumpShaders ?? false,
    });
    this.baseTuning = { ...debug.tuning, ...options.tuning };
    const windowBytes = options.uploadWindowBytes ?? DEFAULT_UPLOAD_WINDOW_BYTES;
    if (!(windowBytes > 0)) throw new RangeError(`webgpu: uploadWindowBytes must be positive, got ${windowBytes}`);
    this.uploads = { windowBytes, inFlight: 0, waits: 0 };
    const limits = this.rt.limits;
    this.ctx = new KernelContext(
      this.rt,
      {
        matmulVariant: options.matmulVariant ?? debug.matmulVariant ?? 'auto',
        weightNormVariant: options.weightNormVariant ?? debug.weightNormVariant ?? 'auto',
        subgroups: (options.subgroups ?? true) && device.features.has('subgroups'),
        shaderF16: (options.shaderF16 ?? true) && device.features.has('shader-f16'),
        fuse: options.fuse ?? debug.fuse ?? true,
        tuning: { ...this.baseTuning },
      },
      partCapacity(Math.min(options.maxBufferBytes ?? Infinity, limits.maxBufferSize, limits.maxStorageBufferBindingSize)),
    );
  }

  /** Bytes one buffer of a tensor holds at most; larger tensors are split over several buffers. */
  get maxBufferBytes(): number {
    return this.ctx.partBytes;
  }

  /** Buffers a tensor occupies (1 unless it was split because it exceeds `maxBufferBytes`). */
  buffersOf(t: GpuTensor): number {
    return isSplit(t) ? t.parts.length : 1;
  }

  /** Counters for tests and benchmarks: dispatches, submits, readbacks, pipelines, buffer allocations. */
  stats(): WebGpuStats {
    return { ...this.rt.stats, ...this.rt.pool.stats, liveTensors: this.ctx.live, uploadWaits: this.uploads.waits };
  }

  /**
   * Keys of the programs compiled so far, in compile order (tests, debugging): which program served a
   * kernel, e.g. `matmul-tiled:8x8x8/8:…` for the tiled matmul on 8 rows of threads.
   */
  programKeys(): string[] {
    return this.rt.programKeys();
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
   * Overrides the programs' blocking (tests, tuning runs); `{}` restores the tuning the backend was
   * created with (`WebGpuBackendOptions.tuning`).
   */
  setTuning(tuning: MatmulTuning): void {
    this.ctx.options.tuning = { ...this.baseTuning, ...tuning };
  }

  /** Turns the fused DoRA kernels (see `WebGpuBackendOptions.fuse`) on or off. */
  setFusion(on: boolean): void {
    this.ctx.options.fuse = on;
  }

  /** Whether subgroup operations are in use (the device has `subgroups` and they were not turned off). */
  get usesSubgroups(): boolean {
    return this.ctx.options.subgroups;
  }

  /**
   * Whether float16 weights are bound as `array<f16>` (the device has `shader-f16` and it was not turned
   * off); otherwise as packed u32 words. Both give the same bits.
   */
  get usesShaderF16(): boolean {
    return this.ctx.options.shaderF16;
  }

  /** Submits recorded work without waiting for it. */
  flush(): void {
    this.rt.flush();
  }

  /** A tensor for a kernel that takes split tensors (see `kernels/split.ts`). */
  private anyArg(t: TensorInfo<GpuTensor>): TensorArg {
    if (t.data.released) throw new DoraError(`webgpu: tensor [${t.shape.join(', ')}] used after release`);
    return { t: t.data, shape: t.shape };
  }

  /** A tensor for a kernel that binds it as one buffer: a split one is refused, naming the op. */
  private arg(t: TensorInfo<GpuTensor>, op: string): TensorArg {
    const a = this.anyArg(t);
    if (isSplit(a.t))
      throw new SplitTensorError(`webgpu ${op}: ${describeSplit(a.t, a.shape)} is larger than one buffer; ${op} takes no split tensors`);
    return a;
  }

  private anySplit(...ts: readonly TensorArg[]): boolean {
    return ts.some((t) => isSplit(t.t));
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
    if (needsSplit(dtype, size, this.ctx.partBytes)) return uploadSplit(this.ctx, values, shape, dtype);
    const t = this.ctx.alloc(dtype, size);
    this.rt.write(t.buf, values);
    return t;
  }

  /**
   * Storage for a tensor that arrives in pieces (`upload.ts`): taken now (split over several buffers when
   * larger than one), each piece written with `queue.writeBuffer` at its offset, with a wait for the queue
   * every `uploadWindowBytes`.
   */
  beginUpload(shape: readonly number[], dtype: DType): UploadSink<GpuTensor> {
    assertKnownDType(dtype, 'beginUpload');
    const label = `${dtype} [${shape.join(', ')}]`;
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0) || !Number.isSafeInteger(sizeOf(shape))) {
      throw new ShapeError(`webgpu beginUpload: invalid shape [${shape.join(', ')}]`);
    }
    this.rt.check();
    return uploadSink(this.ctx, allocStorage(this.ctx, shape, dtype), this.uploads, label);
  }

  /** The coming uploads, in order: their slabs are cut to measure (`buffer-pool.ts`). */
  planUploads(tensors: readonly { readonly shape: readonly number[]; readonly dtype: DType }[]): void {
    this.rt.pool.planSlabs(tensors.flatMap((t) => plannedBuffers(this.ctx, t.shape, t.dtype)));
  }

  async download(t: TensorInfo<GpuTensor>): Promise<TypedArrayFor<DType>> {
    const { t: h } = this.anyArg(t);
    if (isSplit(h)) return downloadSplit(this.ctx, h);
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
    releaseAny(this.ctx, data);
  }

  liveBuffers(): number {
    return this.ctx.live;
  }

  fill(shape: readonly number[], value: number, dtype: DType): GpuTensor {
    assertKnownDType(dtype, 'fill');
    this.rt.check();
    if (needsSplit(dtype, sizeOf(shape), this.ctx.partBytes)) return fillSplit(this.ctx, shape, value, dtype);
    return fill(this.ctx, shape, value, dtype);
  }

  // ---- kernels

  matmul(a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, options: MatMulOptions, outShape: readonly number[]): GpuTensor {
    const [x, y] = [this.anyArg(a), this.anyArg(b)];
    if (this.anySplit(x, y)) return matmulSplit(this.ctx, x, y, options, outShape, (p, q, o, s) => matmul(this.ctx, p, q, o, s));
    return matmul(this.ctx, x, y, options, outShape);
  }

  binary(op: BinaryOp, a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, outShape: readonly number[]): GpuTensor {
    const [x, y] = [this.anyArg(a), this.anyArg(b)];
    if (this.anySplit(x, y)) {
      const dtype = binaryOutDType(op, a.dtype, b.dtype);
      return rowwise(this.ctx, [x, y], outShape, dtype, 'binary', ([p, q], s) => binary(this.ctx, op, p!, q!, s));
    }
    return binary(this.ctx, op, x, y, outShape);
  }

  unary(op: UnaryOp, a: TensorInfo<GpuTensor>): GpuTensor {
    const x = this.anyArg(a);
    if (isSplit(x.t)) return mapParts(this.ctx, x.t, unaryOutDType(op, a.dtype), (p) => unary(this.ctx, op, p));
    return unary(this.ctx, op, x);
  }

  affine(a: TensorInfo<GpuTensor>, scale: number, offset: number): GpuTensor {
    const x = this.anyArg(a);
    if (isSplit(x.t)) return mapParts(this.ctx, x.t, a.dtype === 'int32' ? 'int32' : 'float32', (p) => affine(this.ctx, p, scale, offset));
    return affine(this.ctx, x, scale, offset);
  }

  where(cond: TensorInfo<GpuTensor>, a: TensorInfo<GpuTensor>, b: TensorInfo<GpuTensor>, outShape: readonly number[]): GpuTensor {
    const args = [this.anyArg(cond), this.anyArg(a), this.anyArg(b)] as const;
    if (this.anySplit(...args)) {
      const dtype = a.dtype === 'int32' && b.dtype === 'int32' ? 'int32' : 'float32';
      return rowwise(this.ctx, args, outShape, dtype, 'where', ([c, p, q], s) => where(this.ctx, c!, p!, q!, s));
    }
    return where(this.ctx, ...args, outShape);
  }

  reduce(op: ReduceOp, a: TensorInfo<GpuTensor>, axes: readonly number[], outShape: readonly number[]): GpuTensor {
    return reduce(this.ctx, op, this.arg(a, 'reduce'), axes, outShape);
  }

  argMax(a: TensorInfo<GpuTensor>): GpuTensor {
    return argMax(this.ctx, this.arg(a, 'argMax'));
  }

  softmax(a: TensorInfo<GpuTensor>, log: boolean): GpuTensor {
    return softmax(this.ctx, this.arg(a, 'softmax'), log);
  }

  gather(table: TensorInfo<GpuTensor>, indices: TensorInfo<GpuTensor>): GpuTensor {
    const t = this.anyArg(table);
    if (isSplit(t.t)) return gatherSplit(this.ctx, t, this.anyArg(indices));
    return gather(this.ctx, t, this.arg(indices, 'gather'));
  }

  scatterAdd(indices: TensorInfo<GpuTensor>, updates: TensorInfo<GpuTensor>, numRows: number): GpuTensor {
    return scatterAdd(this.ctx, this.arg(indices, 'scatterAdd'), this.arg(updates, 'scatterAdd'), numRows);
  }

  transpose(a: TensorInfo<GpuTensor>, perm: readonly number[]): GpuTensor {
    const x = this.anyArg(a);
    return isSplit(x.t) ? transposeSplit(this.ctx, x, perm) : transpose(this.ctx, x, perm);
  }

  slice(a: TensorInfo<GpuTensor>, begin: readonly number[], size: readonly number[]): GpuTensor {
    const x = this.anyArg(a);
    return isSplit(x.t) ? sliceSplit(this.ctx, x, begin, size) : slice(this.ctx, x, begin, size);
  }

  concat(tensors: readonly TensorInfo<GpuTensor>[], axis: number, outShape: readonly number[]): GpuTensor {
    return concat(
      this.ctx,
      tensors.map((t) => this.arg(t, 'concat')),
      axis,
      outShape,
    );
  }

  cast(a: TensorInfo<GpuTensor>, dtype: DType): GpuTensor {
    assertKnownDType(dtype, 'cast');
    const x = this.anyArg(a);
    if (isSplit(x.t)) return mapParts(this.ctx, x.t, dtype, (p) => cast(this.ctx, p, dtype));
    return cast(this.ctx, x, dtype);
  }

  conv2d(x: TensorInfo<GpuTensor>, w: TensorInfo<GpuTensor>, p: Conv2dParams, outShape: readonly number[]): GpuTensor {
    return conv2d(this.ctx, this.arg(x, 'conv2d'), this.arg(w, 'conv2d'), p, outShape);
  }

  conv2dBackpropInput(dy: TensorInfo<GpuTensor>, w: TensorInfo<GpuTensor>, p: Conv2dParams, xShape: readonly number[]): GpuTensor {
    return conv2dBackpropInput(this.ctx, this.arg(dy, 'conv2dBackpropInput'), this.arg(w, 'conv2dBackpropInput'), p, xShape);
  }

  conv2dBackpropFilter(x: TensorInfo<GpuTensor>, dy: TensorInfo<GpuTensor>, p: Conv2dParams, wShape: readonly number[]): GpuTensor {
    return conv2dBackpropFilter(this.ctx, this.arg(x, 'conv2dBackpropFilter'), this.arg(dy, 'conv2dBackpropFilter'), p, wShape);
  }

  /** In place, one dispatch touching only the slab (kernels/write-slice.ts). */
  writeSlice(dst: TensorInfo<GpuTensor>, src: TensorInfo<GpuTensor>, axis: number, offset: number): void {
    const d = this.arg(dst, 'writeSlice');
    const v = this.arg(src, 'writeSlice');
    const n = src.shape[axis] ?? 0;
    if (
      src.dtype !== dst.dtype ||
      src.shape.length !== dst.shape.length ||
      src.shape.some((x, i) => i !== axis && x !== dst.shape[i]) ||
      !Number.isInteger(offset) ||
      offset < 0 ||
      offset + n > (dst.shape[axis] ?? 0)
    ) {
      throw new ShapeError(
        `webgpu writeSlice: [${src.shape.join(', ')}] ${src.dtype} does not fit [${dst.shape.join(', ')}] ${dst.dtype} at offset ${offset} along axis ${axis}`,
      );
    }
    // A tensor written over itself whole: nothing to do (and one buffer cannot be bound twice).
    if (d.t.buf === v.t.buf) return;
    writeSlice(this.ctx, d, v, axis, offset);
  }

  // ---- fused

  weightNorm(
    w: TensorInfo<GpuTensor>,
    a: TensorInfo<GpuTensor>,
    b: TensorInfo<GpuTensor>,
    scale: number,
    options: WeightNormOptions,
  ): GpuTensor {
    return weightNormSplit(this.ctx, this.anyArg(w), this.anyArg(a), this.anyArg(b), scale, options, (p, q, r, s, o) =>
      weightNorm(this.ctx, p, q, r, s, o),
    );
  }

  matmulCompose(
    x: TensorInfo<GpuTensor>,
    w: TensorInfo<GpuTensor>,
    lora: TensorInfo<GpuTensor>,
    g: TensorInfo<GpuTensor>,
    scale: number,
    bias: TensorInfo<GpuTensor> | null,
    options: WeightNormOptions,
  ): { base: GpuTensor; y: GpuTensor } {
    const arg = (t: TensorInfo<GpuTensor>) => this.arg(t, 'matmulCompose');
    return matmulCompose(this.ctx, arg(x), arg(w), arg(lora), arg(g), scale, bias ? arg(bias) : null, !!options.transposeW);
  }

  matmulWeightNorm(
    x: TensorInfo<GpuTensor>,
    w: WeightInfo<GpuTensor>,
    a: TensorInfo<GpuTensor>,
    b: TensorInfo<GpuTensor>,
    scale: number,
    options: WeightNormOptions,
  ): { base: GpuTensor; norm: GpuTensor } | null {
    const arg = (t: TensorInfo<GpuTensor>) => this.arg(t, 'matmulWeightNorm');
    return matmulWeightNorm(this.ctx, arg(x), narrowArg(w, 'matmulWeightNorm'), arg(a), arg(b), scale, !!options.transposeW);
  }

  doraCompose(
    base: TensorInfo<GpuTensor>,
    lora: TensorInfo<GpuTensor>,
    g: TensorInfo<GpuTensor>,
    scale: number,
    bias: TensorInfo<GpuTensor> | null,
  ): GpuTensor {
    const op = 'doraCompose';
    return doraCompose(this.ctx, this.arg(base, op), this.arg(lora, op), this.arg(g, op), scale, bias ? this.arg(bias, op) : null);
  }

  // ---- narrow weights (bf16/f16 dense, nf4/fp4/int8 packed; see kernels/narrow.ts)

  matmulNarrow(x: TensorInfo<GpuTensor>, w: WeightInfo<GpuTensor>, transposeW: boolean, outShape: readonly number[]): GpuTensor {
    return matmulNarrow(this.ctx, this.anyArg(x), narrowArg(w, 'matmulNarrow'), transposeW, outShape);
  }

  gatherNarrow(table: WeightInfo<GpuTensor>, indices: TensorInfo<GpuTensor>): GpuTensor {
    return gatherNarrow(this.ctx, narrowArg(table, 'gatherNarrow'), this.anyArg(indices));
  }

  weightNormNarrow(
    w: WeightInfo<GpuTensor>,
    a: TensorInfo<GpuTensor>,
    b: TensorInfo<GpuTensor>,
    scale: number,
    options: WeightNormOptions,
  ): GpuTensor {
    return weightNormNarrow(this.ctx, narrowArg(w, 'weightNormNarrow'), this.anyArg(a), this.anyArg(b), scale, options);
  }

  dequantize(w: QuantizedInfo<GpuTensor>): GpuTensor {
    return dequantize(this.ctx, narrowArg(w, 'dequantize'));
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
