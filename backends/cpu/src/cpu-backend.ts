/**
 * The CPU backend: every kernel of the Backend contract on typed arrays. Two implementations share this
 * class: the JavaScript kernels (`kernels: 'js'`), the reference the conformance suite compares other
 * backends with, which favours exactness (float64 accumulation everywhere) where that costs nothing in
 * JavaScript; and the WebAssembly SIMD kernels (`kernels: 'wasm'`, the default where the engine has SIMD),
 * whose tensors live in the wasm heap so the hot kernels (matmul, the fused weight norm, large elementwise
 * ops and reductions) run in place and, with `threads` > 1, across worker threads. Kernels without a wasm
 * version run the JavaScript code on the heap views.
 */
import {
  type AnyTypedArray,
  type Backend,
  type BackendCapabilities,
  BackendError,
  type BinaryOp,
  ConfigError,
  type Conv2dParams,
  type DType,
  DTypeError,
  type MatMulOptions,
  type MemoryInfo,
  MissingKernelError,
  OutOfMemoryError,
  type ReduceOp,
  ShapeError,
  sameShape,
  shapeStr,
  sizeOf,
  type TypedArrayFor,
  type QuantizedInfo,
  type UnaryOp,
  type UploadSink,
  type WeightInfo,
  type WeightNormOptions,
} from '@dorajs/core';
import { planBroadcast } from './kernels/broadcast.js';
import { castInto, encodeScalar } from './kernels/cast.js';
import { type ConvEnv, conv2dFilterGrad, conv2dForward, conv2dInputGrad, convGeometry } from './kernels/conv2d.js';
import { affineInto, binaryInto, INT_UNARY, unaryInto, whereInto } from './kernels/elementwise.js';
import { doraComposeInto, rmsNormInto, rotaryInto, weightNormColumns, weightNormOne, weightNormRows } from './kernels/fused.js';
import { checkIndex, gatherInto, scatterAddInto } from './kernels/indexing.js';
import { decodeRow, matmulNarrowInto, type NarrowW, narrowOperand, weightNormNarrowInto } from './kernels/narrow.js';
import { concatInto, sliceInto, transposeInto } from './kernels/layout.js';
import { matmulInto, matmulShapes } from './kernels/matmul.js';
import { argMaxInto, reduceInto, softmaxInto } from './kernels/reduce.js';
import { checkMemoryLimit, parseMemoryLimit } from './memory-limit.js';
import { CpuStorage, HeapHome, LiveCounter } from './storage.js';
import { wasmFeatures } from './wasm/features.js';
import { hostCores } from './wasm/host.js';
import { isWasmBinary, isWasmUnary, type WasmBinaryOp, type WasmUnaryOp } from './wasm/elementwise-ops.js';
// Types only: the wasm kernels arrive through the WasmEngineFactory handed to the constructor (see engine.ts).
import type { WasmEngineFactory } from './wasm/engine.js';
import type { WasmKernels } from './wasm/kernels.js';
import { wasmConvEnv } from './wasm/conv-env.js';
import type { NarrowKernels, NarrowOperand } from './wasm/narrow-host.js';
import type { WorkerPool } from './wasm/pool.js';
import { WasmRuntime } from './wasm/runtime.js';
import {
  arrayTypeOf,
  asFloat,
  asInt,
  asNumeric,
  type CpuInfo,
  checkBroadcast,
  checkConcatPart,
  checkDoraCompose,
  checkPermutation,
  checkReduce,
  checkScatterAdd,
  checkShape,
  checkSlice,
  describeArray,
  dtypeOfArray,
  type Numeric,
  readHandle,
  weightNormDims,
} from './validation.js';

export type { CpuInfo } from './validation.js';

export interface CpuBackendOptions {
  /**
   * Threads the wasm kernels may use, the calling thread included (default 1; 'auto' = every core the
   * runtime reports). More than one needs the wasm kernels, a shared WebAssembly memory and worker threads
   * (Node's worker_threads, or Web Workers on a cross-origin-isolated page); where any is missing the
   * kernels run on the calling thread and `backend.threads` says 1 (`backend.description` says why).
   */
  readonly threads?: number | 'auto';
  /**
   * 'wasm': WebAssembly SIMD kernels — on a shared wasm memory, or, where the engine cannot share one (a
   * browser page that is not cross-origin isolated), on one thread over a non-shared memory with a
   * resizable buffer (ConfigError where the engine has no SIMD or neither kind of memory); 'js': the
   * typed-array reference kernels; 'auto' (default): wasm where available.
   */
  readonly kernels?: 'auto' | 'wasm' | 'js';
  /**
   * Use relaxed-SIMD fused multiply-add where the engine has it (default true). FMA rounds once per
   * multiply-add instead of twice; false gives the same code path as an engine without relaxed SIMD.
   */
  readonly fma?: boolean;
  /**
   * Multiply-adds (or elements, for memory-bound kernels) below which a kernel is not split across threads
   * (default 2¹⁸). Tests lower it to run the threaded paths on small inputs.
   */
  readonly splitThreshold?: number;
  /**
   * Most bytes the backend's live tensors may hold together (default: no cap besides the wasm heap's). An
   * allocation past it is refused with an OutOfMemoryError before any memory is taken; `memory()` reports
   * it as the limit. For bounding an application's memory, and for provoking out-of-memory in tests.
   */
  readonly memoryLimitBytes?: number;
}

/** Below this many multiply-adds a matmul, GEMV or norm is not worth waking other threads for. */
const DEFAULT_SPLIT = 1 << 18;

/** The last engine a backend was given: lets `new CpuBackend()` (no engine) reuse it. */
let lastEngine: WasmEngineFactory | undefined;

const ALL_DTYPES = ['float32', 'int32', 'bfloat16', 'float16', 'int8', 'uint8'] as const satisfies readonly DType[];

export class CpuBackend implements Backend<CpuStorage> {
  readonly name = 'cpu';
  readonly capabilities: BackendCapabilities = { dtypes: ALL_DTYPES, offHost: false };
  /** Which kernels run: WebAssembly SIMD or the typed-array reference. */
  readonly kernels: 'wasm' | 'js';
  /** Whether the wasm kernels use relaxed-SIMD FMA. */
  readonly fma: boolean;
  /** Threads the kernels use, the calling thread included (see `CpuBackendOptions.threads`). */
  readonly threads: number;
  /** The number that was asked for. */
  readonly maxThreads: number;
  /** `CpuBackendOptions.memoryLimitBytes` (+∞ without one). */
  readonly memoryLimitBytes: number;
  /**
   * One line for people: the kernels and threads in use, and why fewer threads than asked for, e.g.
   * `wasm SIMD + FMA, 2 threads` or `wasm SIMD + FMA, 1 thread: page is not cross-origin isolated`.
   */
  readonly description: string;
  private readonly live = new LiveCounter();
  private readonly home: HeapHome | null = null;
  private readonly wasm: WasmKernels | null = null;
  private readonly narrow: NarrowKernels | null = null;
  private readonly pool: WorkerPool | null = null;
  private disposed = false;

  /**
   * Prefer `createCpuBackend(options)` (synchronous) or `await loadCpuBackend(options)` (pages: the wasm kernel
   * emitter arrives as a lazy chunk), which hand in `engine`. Without one, the wasm kernels need an engine that
   * an earlier backend of this thread was given; with none yet, only `kernels: 'js'` can be built here.
   */
  constructor(options: CpuBackendOptions = {}, engine?: WasmEngineFactory) {
    const asked = options.threads ?? 1;
    const threads = asked === 'auto' ? hostCores() : asked;
    if (!Number.isInteger(threads) || threads < 1)
      throw new ConfigError(`cpu backend: threads must be a positive integer or 'auto', got ${String(asked)}`);
    this.maxThreads = threads;
    this.memoryLimitBytes = parseMemoryLimit(options.memoryLimitBytes);
    const choice = options.kernels ?? 'auto';
    if (choice !== 'auto' && choice !== 'wasm' && choice !== 'js')
      throw new ConfigError(`cpu backend: kernels must be 'auto', 'wasm' or 'js', got '${String(choice)}'`);
    const split = options.splitThreshold ?? DEFAULT_SPLIT;
    if (!(split >= 0)) throw new ConfigError(`cpu backend: splitThreshold must be a non-negative number, got ${split}`);
    const runtime = choice === 'js' ? null : WasmRuntime.get();
    const { simd } = wasmFeatures();
    const noWasm = simd ? 'SIMD but neither a shared nor a resizable WebAssembly.Memory' : 'no WebAssembly SIMD';
    if (choice === 'wasm' && !runtime) {
      throw new ConfigError(
        `cpu backend: kernels: 'wasm' needs WebAssembly SIMD128 and a shared or resizable WebAssembly.Memory; this engine has ${noWasm}`,
      );
    }
    if (engine) lastEngine = engine;
    const build = engine ?? lastEngine;
    if (runtime && !build) {
      throw new ConfigError(
        "cpu backend: the wasm kernels are not loaded; create the backend with createCpuBackend() or await loadCpuBackend() (or pass kernels: 'js')",
      );
    }
    this.kernels = runtime ? 'wasm' : 'js';
    this.fma = runtime !== null && (options.fma ?? true) && wasmFeatures().relaxedSimd;
    let used = 1;
    if (runtime) {
      this.home = new HeapHome(runtime);
      const { wasm, narrow, pool } = build!(runtime, this.fma, split, threads);
      this.wasm = wasm;
      this.narrow = narrow;
      if (pool) {
        this.pool = pool;
        used = threads;
      }
    }
    this.threads = used;
    const count = `${used} thread${used === 1 ? '' : 's'}`;
    this.description = !runtime
      ? `typed-array kernels, 1 thread${choice === 'js' ? '' : ` (this engine has ${noWasm})`}`
      : `wasm SIMD${this.fma ? ' + FMA' : ''}, ${runtime.shared ? count : `${count}: page is not cross-origin isolated`}`;
  }

  /**
   * Resolves when the worker threads have started (immediately without any). Kernels never wait for them:
   * until a worker is up the calling thread does its share, so awaiting this only matters for timing.
   */
  ready(): Promise<void> {
    return this.pool ? this.pool.ready() : Promise.resolve();
  }

  // ---- storage

  upload(values: TypedArrayFor<DType>, shape: readonly number[], dtype: DType): CpuStorage {
    this.checkShape('upload', shape);
    if (!(values instanceof arrayTypeOf(dtype))) {
      throw new DTypeError(`cpu upload: ${dtype} needs a ${arrayTypeOf(dtype).name}, got ${describeArray(values)}`);
    }
    if (values.length !== sizeOf(shape)) throw new ShapeError(`cpu upload: ${values.length} values do not fill shape ${shapeStr(shape)}`);
    return this.copyOf(values, shape);
  }

  /**
   * Storage taken now (refused up front when the heap cannot hold it), filled piece by piece: each write
   * copies straight into the wasm heap through a view made at that moment from the heap's current buffer
   * (a grow between writes never leaves a stale view), so the tensor never exists whole on the host.
   */
  beginUpload(shape: readonly number[], dtype: DType): UploadSink<CpuStorage> {
    this.checkShape('beginUpload', shape);
    const s = this.allocate(dtype, sizeOf(shape), false);
    const home = this.home;
    let at = 0;
    return {
      write: (bytes) => {
        this.checkAlive('beginUpload');
        if (at + bytes.byteLength > s.values.byteLength) {
          throw new ShapeError(`cpu beginUpload: ${bytes.byteLength} more bytes after ${at} overflow ${dtype} ${shapeStr(shape)}`);
        }
        const target =
          s.ptr !== 0 && home
            ? new Uint8Array(home.runtime.buffer, s.ptr + at, bytes.byteLength)
            : new Uint8Array(s.values.buffer, s.values.byteOffset + at, bytes.byteLength);
        target.set(bytes);
        at += bytes.byteLength;
      },
      finish: () => {
        if (at !== s.values.byteLength) {
          s.markReleased();
          throw new ShapeError(`cpu beginUpload: ${at} of ${s.values.byteLength} bytes of ${dtype} ${shapeStr(shape)} were written`);
        }
        return s;
      },
      abort: () => s.markReleased(),
    };
  }

  download(t: CpuInfo): Promise<TypedArrayFor<DType>> {
    return Promise.resolve(this.read('download', t).slice() as TypedArrayFor<DType>);
  }

  release(data: CpuStorage): void {
    if (!(data instanceof CpuStorage)) throw new BackendError(`cpu release: ${describeArray(data)} is not a cpu storage handle`);
    if (data.owner !== this.live) throw new BackendError('cpu release: the handle belongs to another cpu backend instance');
    data.markReleased();
  }

  liveBuffers(): number {
    return this.live.count;
  }

  fill(shape: readonly number[], value: number, dtype: DType): CpuStorage {
    this.checkShape('fill', shape);
    const v = encodeScalar(value, dtype);
    return this.output(dtype, sizeOf(shape), (out) => out.fill(v), v !== 0);
  }

  // ---- linear algebra

  matmul(a: CpuInfo, b: CpuInfo, options: MatMulOptions, outShape: readonly number[]): CpuStorage {
    const av = this.readFloat('matmul', a);
    const bv = this.readFloat('matmul', b);
    const ta = options.transposeA ?? false;
    const tb = options.transposeB ?? false;
    const shapes = matmulShapes(a.shape, b.shape, ta, tb, outShape);
    const wasm = this.wasm;
    const out = this.allocate('float32', sizeOf(outShape), !wasm);
    try {
      if (wasm && out.ptr && a.data.ptr && b.data.ptr) wasm.matmul(a.data.ptr, a.shape, b.data.ptr, b.shape, ta, tb, shapes, out.ptr);
      else matmulInto(av, a.shape, bv, b.shape, ta, tb, shapes, out.values as Float32Array);
    } catch (e) {
      out.markReleased();
      throw e;
    }
    return out;
  }

  // ---- elementwise

  binary(op: BinaryOp, a: CpuInfo, b: CpuInfo, outShape: readonly number[]): CpuStorage {
    const av = this.readNumeric(op, a);
    const bv = this.readNumeric(op, b);
    if (a.dtype !== b.dtype)
      throw new DTypeError(`cpu ${op}: dtypes differ (${a.dtype} ${shapeStr(a.shape)} and ${b.dtype} ${shapeStr(b.shape)})`);
    checkBroadcast(op, [a.shape, b.shape], outShape);
    const isCompare = op === 'greater' || op === 'equal';
    const plan = planBroadcast(op, outShape, [a.shape, b.shape]);
    const wasm = a.dtype === 'float32' && isWasmBinary(op) ? this.wasmFor(a, b) : null;
    return this.output(
      isCompare ? 'float32' : a.dtype,
      sizeOf(outShape),
      (out, ptr) => {
        if (!(wasm && ptr && wasm.binary(op as WasmBinaryOp, a.data.ptr, b.data.ptr, ptr, plan)))
          binaryInto(op, av, bv, out as Numeric, plan);
      },
      false,
    );
  }

  unary(op: UnaryOp, a: CpuInfo): CpuStorage {
    const x = this.readNumeric(op, a);
    if (a.dtype === 'int32' && !INT_UNARY.has(op)) throw new DTypeError(`cpu ${op}: needs float32, got int32 ${shapeStr(a.shape)}`);
    const wasm = a.dtype === 'float32' && isWasmUnary(op) ? this.wasmFor(a) : null;
    return this.output(
      a.dtype,
      x.length,
      (out, ptr) => {
        if (wasm && ptr) wasm.unary(op as WasmUnaryOp, a.data.ptr, ptr, x.length);
        else unaryInto(op, x, out as Numeric);
      },
      false,
    );
  }

  affine(a: CpuInfo, scale: number, offset: number): CpuStorage {
    const x = this.readNumeric('affine', a);
    const wasm = a.dtype === 'float32' ? this.wasmFor(a) : null;
    return this.output(
      a.dtype,
      x.length,
      (out, ptr) => {
        if (wasm && ptr) wasm.affine(a.data.ptr, ptr, x.length, scale, offset);
        else affineInto(x, scale, offset, out as Numeric);
      },
      false,
    );
  }

  where(cond: CpuInfo, a: CpuInfo, b: CpuInfo, outShape: readonly number[]): CpuStorage {
    const cv = this.read('where', cond);
    if (cond.dtype === 'bfloat16' || cond.dtype === 'float16')
      throw new DTypeError(`cpu where: condition must not be ${cond.dtype}; cast it first`);
    const av = this.readNumeric('where', a);
    const bv = this.readNumeric('where', b);
    if (a.dtype !== b.dtype) throw new DTypeError(`cpu where: branches differ in dtype (${a.dtype} and ${b.dtype})`);
    checkBroadcast('where', [cond.shape, a.shape, b.shape], outShape);
    const plan = planBroadcast('where', outShape, [cond.shape, a.shape, b.shape]);
    return this.output(a.dtype, sizeOf(outShape), (out) => whereInto(cv, av, bv, out as Numeric, plan), false);
  }

  // ---- reductions

  reduce(op: ReduceOp, a: CpuInfo, axes: readonly number[], outShape: readonly number[]): CpuStorage {
    const x = this.readNumeric(op, a);
    if (op !== 'sum' && op !== 'mean' && op !== 'max' && op !== 'min') throw new MissingKernelError(`reduce '${String(op)}'`, 'cpu');
    if (a.dtype === 'int32' && op === 'mean') throw new DTypeError(`cpu mean: needs float32, got int32 ${shapeStr(a.shape)}`);
    const kept = checkReduce(op, a.shape, axes, outShape);
    // One run of adjacent reduced axes is x viewed [outer, len, inner]: the wasm kernels take that.
    const contiguous = axes.every((ax, i) => i === 0 || ax === axes[i - 1]! + 1);
    const len = axes.reduce((p, ax) => p * a.shape[ax]!, 1);
    const wasm = a.dtype === 'float32' && contiguous && len > 0 ? this.wasmFor(a) : null;
    return this.output(
      a.dtype,
      sizeOf(kept),
      (out, ptr) => {
        if (wasm && ptr) {
          const outer = sizeOf(a.shape.slice(0, axes[0]));
          const inner = sizeOf(a.shape.slice(axes[axes.length - 1]! + 1));
          wasm.reduce(op === 'mean' ? 'sum' : op, a.data.ptr, ptr, outer, len, inner, op === 'mean' ? 1 / len : 1);
        } else reduceInto(op, x, a.shape, axes, out as Numeric);
      },
      false,
    );
  }

  argMax(a: CpuInfo): CpuStorage {
    const x = this.readNumeric('argMax', a);
    const last = a.shape[a.shape.length - 1];
    if (last === undefined || last === 0) throw new ShapeError(`cpu argMax: needs a non-empty last axis, got ${shapeStr(a.shape)}`);
    return this.output('int32', x.length / last, (out) => argMaxInto(x, last, out as Int32Array), false);
  }

  softmax(a: CpuInfo, log: boolean): CpuStorage {
    const x = this.readFloat(log ? 'logSoftmax' : 'softmax', a);
    if (a.shape.length === 0) throw new ShapeError(`cpu softmax: needs at least one axis, got a scalar`);
    const n = a.shape[a.shape.length - 1]!;
    const wasm = n > 0 ? this.wasmFor(a) : null;
    return this.output(
      'float32',
      x.length,
      (out, ptr) => {
        if (wasm && ptr) wasm.softmax(a.data.ptr, ptr, x.length / n, n, log);
        else softmaxInto(x, n, log, out as Float32Array);
      },
      false,
    );
  }

  // ---- indexing

  gather(table: CpuInfo, indices: CpuInfo): CpuStorage {
    const tv = this.readNumeric('gather', table);
    const iv = this.readInt('gather', indices);
    if (table.shape.length !== 2) throw new ShapeError(`cpu gather: the table must be 2-D, got ${shapeStr(table.shape)}`);
    const [rows, cols] = table.shape as [number, number];
    return this.output(table.dtype, iv.length * cols, (out) => gatherInto(tv, rows, cols, iv, out as Numeric), false);
  }

  scatterAdd(indices: CpuInfo, updates: CpuInfo, numRows: number): CpuStorage {
    const iv = this.readInt('scatterAdd', indices);
    const uv = this.readFloat('scatterAdd', updates);
    const cols = checkScatterAdd(indices, updates, numRows, iv.length, uv.length);
    return this.output('float32', numRows * cols, (out) => scatterAddInto(iv, uv, cols, numRows, out as Float32Array));
  }

  // ---- layout

  transpose(a: CpuInfo, perm: readonly number[]): CpuStorage {
    const x = this.read('transpose', a);
    checkPermutation(a.shape, perm);
    return this.output(a.dtype, x.length, (out) => transposeInto(x, a.shape, perm, out), false);
  }

  slice(a: CpuInfo, begin: readonly number[], size: readonly number[]): CpuStorage {
    const x = this.read('slice', a);
    checkSlice(a.shape, begin, size);
    return this.output(a.dtype, sizeOf(size), (out) => sliceInto(x, a.shape, begin, size, out), false);
  }

  concat(tensors: readonly CpuInfo[], axis: number, outShape: readonly number[]): CpuStorage {
    const first = tensors[0];
    if (!first) throw new ShapeError('cpu concat: needs at least one tensor');
    const rank = first.shape.length;
    if (!Number.isInteger(axis) || axis < 0 || axis >= rank) throw new ShapeError(`cpu concat: axis ${axis} out of range for rank ${rank}`);
    const parts = tensors.map((t) => {
      const values = this.read('concat', t);
      checkConcatPart(first, t, axis);
      return { values, shape: t.shape };
    });
    const expected = first.shape.map((d, i) => (i === axis ? tensors.reduce((s, t) => s + t.shape[axis]!, 0) : d));
    if (!sameShape(expected, outShape)) throw new ShapeError(`cpu concat: the result is ${shapeStr(expected)}, not ${shapeStr(outShape)}`);
    return this.output(first.dtype, sizeOf(expected), (out) => concatInto(parts, axis, out), false);
  }

  cast(a: CpuInfo, dtype: DType): CpuStorage {
    const x = this.read('cast', a);
    arrayTypeOf(dtype); // throws a DTypeError naming an unknown target dtype
    return this.output(dtype, x.length, (out) => castInto(x, a.dtype, dtype, out), false);
  }

  // ---- convolution

  conv2d(x: CpuInfo, w: CpuInfo, p: Conv2dParams, outShape: readonly number[]): CpuStorage {
    const xv = this.readFloat('conv2d', x);
    const wv = this.readFloat('conv2d', w);
    const g = convGeometry('conv2d', x.shape, w.shape, p, outShape);
    return this.output(
      'float32',
      sizeOf(outShape),
      (out, ptr) => conv2dForward(xv, wv, g, out as Float32Array, this.convEnv([x, xv], [w, wv], [out, ptr])),
      false,
    );
  }

  conv2dBackpropInput(dy: CpuInfo, w: CpuInfo, p: Conv2dParams, xShape: readonly number[]): CpuStorage {
    const dyv = this.readFloat('conv2dBackpropInput', dy);
    const wv = this.readFloat('conv2dBackpropInput', w);
    const g = convGeometry('conv2dBackpropInput', xShape, w.shape, p, dy.shape);
    return this.output('float32', sizeOf(xShape), (dx, ptr) =>
      conv2dInputGrad(dyv, wv, g, dx as Float32Array, this.convEnv([dy, dyv], [w, wv], [dx, ptr])),
    );
  }

  conv2dBackpropFilter(x: CpuInfo, dy: CpuInfo, p: Conv2dParams, wShape: readonly number[]): CpuStorage {
    const xv = this.readFloat('conv2dBackpropFilter', x);
    const dyv = this.readFloat('conv2dBackpropFilter', dy);
    const g = convGeometry('conv2dBackpropFilter', x.shape, wShape, p, dy.shape);
    return this.output(
      'float32',
      sizeOf(wShape),
      (dw, ptr) => conv2dFilterGrad(xv, dyv, g, dw as Float32Array, this.convEnv([x, xv], [dy, dyv], [dw, ptr])),
      false,
    );
  }

  // ---- fused

  /** The norms of the merged weight's rows, [out] (shapes as `weightNormDims` reads them). */
  weightNorm(w: CpuInfo, a: CpuInfo, b: CpuInfo, scale: number, options: WeightNormOptions): CpuStorage {
    const wv = this.readFloat('weightNorm', w);
    const av = this.readFloat('weightNorm', a);
    const bv = this.readFloat('weightNorm', b);
    const tw = options.transposeW ?? false;
    const { out, inF, r } = weightNormDims(w, a, b, tw);
    const wasm = this.wasm;
    return this.output(
      'float32',
      out,
      (values, ptr) => {
        const norms = values as Float32Array;
        if (wasm && ptr && w.data.ptr && a.data.ptr && b.data.ptr && inF > 0) {
          for (const o of wasm.weightNorm(w.data.ptr, a.data.ptr, b.data.ptr, out, inF, r, scale, tw, ptr))
            norms[o] = weightNormOne(wv, av, bv, out, inF, r, scale, tw, o);
        } else {
          (tw ? weightNormColumns : weightNormRows)(wv, av, bv, out, inF, r, scale, norms);
        }
      },
      false,
    );
  }

  doraCompose(base: CpuInfo, lora: CpuInfo, g: CpuInfo, scale: number, bias: CpuInfo | null): CpuStorage {
    const basev = this.readFloat('doraCompose', base);
    const lorav = this.readFloat('doraCompose', lora);
    const gv = this.readFloat('doraCompose', g);
    const biasv = bias ? this.readFloat('doraCompose', bias) : null;
    const out = checkDoraCompose(base, lora, g, bias);
    const wasm = this.wasmFor(base, lora, g, ...(bias ? [bias] : []));
    return this.output(
      'float32',
      basev.length,
      (y, ptr) => {
        if (wasm && ptr && out > 0)
          wasm.doraCompose(base.data.ptr, lora.data.ptr, g.data.ptr, bias ? bias.data.ptr : 0, scale, ptr, basev.length, out);
        else doraComposeInto(basev, lorav, gv, scale, biasv, out, y as Float32Array);
      },
      false,
    );
  }

  rmsNorm(x: CpuInfo, weight: CpuInfo | null, eps: number): CpuStorage {
    const xv = this.readFloat('rmsNorm', x);
    const wv = weight ? this.readFloat('rmsNorm', weight) : null;
    const n = x.shape[x.shape.length - 1];
    if (n === undefined || (weight && (weight.shape.length !== 1 || weight.shape[0] !== n))) {
      throw new ShapeError(
        `cpu rmsNorm: x ${shapeStr(x.shape)} and weight ${weight ? shapeStr(weight.shape) : 'none'} do not fit [..., n] and [n]`,
      );
    }
    return this.output('float32', xv.length, (out) => rmsNormInto(xv, wv, n, eps, out as Float32Array), false);
  }

  rotary(x: CpuInfo, cos: CpuInfo, sin: CpuInfo): CpuStorage {
    const xv = this.readFloat('rotary', x);
    const cv = this.readFloat('rotary', cos);
    const sv = this.readFloat('rotary', sin);
    const [batch, , seq, d] = x.shape;
    const rows = cos.shape[0];
    if (
      x.shape.length !== 4 ||
      d === undefined ||
      d % 2 !== 0 ||
      !sameShape(cos.shape, sin.shape) ||
      cos.shape.length !== 4 ||
      (rows !== 1 && rows !== batch) ||
      cos.shape[1] !== 1 ||
      cos.shape[2] !== seq ||
      cos.shape[3] !== d
    ) {
      throw new ShapeError(
        `cpu rotary: x ${shapeStr(x.shape)}, cos ${shapeStr(cos.shape)}, sin ${shapeStr(sin.shape)} do not fit [batch, heads, seq, d] and [1 or batch, 1, seq, d] (d even)`,
      );
    }
    return this.output('float32', xv.length, (out) => rotaryInto(xv, cv, sv, x.shape, rows!, out as Float32Array), false);
  }

  writeSlice(dst: CpuInfo, src: CpuInfo, axis: number, offset: number): void {
    const d = this.read('writeSlice', dst);
    const v = this.read('writeSlice', src);
    const n = src.shape[axis] ?? 0;
    if (
      src.dtype !== dst.dtype ||
      src.shape.length !== dst.shape.length ||
      src.shape.some((s, i) => i !== axis && s !== dst.shape[i]) ||
      !Number.isInteger(offset) ||
      offset < 0 ||
      offset + n > (dst.shape[axis] ?? 0)
    ) {
      throw new ShapeError(
        `cpu writeSlice: ${shapeStr(src.shape)} ${src.dtype} does not fit ${shapeStr(dst.shape)} ${dst.dtype} at offset ${offset} along axis ${axis}`,
      );
    }
    // One contiguous run per index of the leading axes.
    const inner = sizeOf(dst.shape.slice(axis + 1));
    const outer = sizeOf(dst.shape.slice(0, axis));
    const dstRun = dst.shape[axis]! * inner;
    const srcRun = n * inner;
    for (let o = 0; o < outer; o++) d.set(v.subarray(o * srcRun, (o + 1) * srcRun), o * dstRun + offset * inner);
  }

  // ---- narrow weights (bf16/f16, nf4/fp4/int8): W widened in registers or one row panel at a time

  matmulNarrow(x: CpuInfo, w: WeightInfo, transposeW: boolean, outShape: readonly number[]): CpuStorage {
    const xv = this.readFloat('matmulNarrow', x);
    const nw = this.narrowW('matmulNarrow', w);
    const inner = transposeW ? nw.cols : nw.rows;
    const m = x.shape[0] ?? 0;
    const outCols = transposeW ? nw.rows : nw.cols;
    if (x.shape.length !== 2 || x.shape[1] !== inner || outShape.length !== 2 || outShape[0] !== m || outShape[1] !== outCols) {
      throw new ShapeError(
        `cpu matmulNarrow: x ${shapeStr(x.shape)}, W [${nw.rows}, ${nw.cols}]${transposeW ? 'ᵀ' : ''} and out ${shapeStr(outShape)} do not fit`,
      );
    }
    const heapW = this.heapOperand(nw);
    return this.output(
      'float32',
      m * outCols,
      (y, ptr) => {
        if (this.narrow && heapW && ptr && x.data.ptr) this.narrow.matmul(heapW, x.data.ptr, m, transposeW, ptr);
        else matmulNarrowInto(nw, xv, m, transposeW, y as Float32Array);
      },
      false,
    );
  }

  gatherNarrow(table: WeightInfo, indices: CpuInfo): CpuStorage {
    const iv = this.readInt('gatherNarrow', indices);
    const nw = this.narrowW('gatherNarrow', table);
    for (let i = 0; i < iv.length; i++) checkIndex('gatherNarrow', iv[i]!, i, nw.rows);
    const heapW = this.heapOperand(nw);
    return this.output(
      'float32',
      iv.length * nw.cols,
      (y, ptr) => {
        if (this.narrow && heapW && ptr) this.narrow.gather(heapW, iv, ptr);
        else for (let i = 0; i < iv.length; i++) decodeRow(nw, iv[i]!, y as Float32Array, i * nw.cols);
      },
      false,
    );
  }

  weightNormNarrow(w: WeightInfo, a: CpuInfo, b: CpuInfo, scale: number, options: WeightNormOptions): CpuStorage {
    const nw = this.narrowW('weightNormNarrow', w);
    const av = this.readFloat('weightNormNarrow', a);
    const bv = this.readFloat('weightNormNarrow', b);
    const tw = options.transposeW ?? false;
    // Only W's shape is checked here; its parts were checked by narrowW.
    const { out, inF, r } = weightNormDims({ ...a, shape: [nw.rows, nw.cols] }, a, b, tw);
    const heapW = this.heapOperand(nw);
    return this.output(
      'float32',
      out,
      (norms, ptr) => {
        if (this.narrow && heapW && ptr && a.data.ptr && b.data.ptr && inF > 0)
          this.narrow.weightNorm(heapW, a.data.ptr, b.data.ptr, r, scale, tw, ptr);
        else weightNormNarrowInto(nw, av, bv, r, scale, tw, norms as Float32Array);
      },
      false,
    );
  }

  dequantize(w: QuantizedInfo): CpuStorage {
    const nw = this.narrowW('dequantize', w);
    const heapW = this.heapOperand(nw);
    return this.output(
      'float32',
      nw.rows * nw.cols,
      (y, ptr) => {
        if (this.narrow && heapW && ptr) this.narrow.decodeRows(heapW, 0, nw.rows, ptr);
        else for (let r = 0; r < nw.rows; r++) decodeRow(nw, r, y as Float32Array, r * nw.cols);
      },
      false,
    );
  }

  private narrowW(op: string, w: WeightInfo): NarrowW {
    this.checkAlive(op);
    return narrowOperand(op, w, (t) => this.read(op, t));
  }

  /** The wasm view of a narrow W whose parts all live in the heap (else the typed-array kernels run). */
  private heapOperand(w: NarrowW): NarrowOperand | null {
    if (!this.narrow || !w.dataPtr || (w.scales && !w.scalesPtr)) return null;
    return { format: w.format, rows: w.rows, cols: w.cols, data: w.dataPtr, scales: w.scalesPtr, blocksize: w.blocksize };
  }

  // ---- lifecycle

  sync(): Promise<void> {
    this.checkAlive('sync');
    return Promise.resolve();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool?.close();
    this.wasm?.dispose();
  }

  // ---- helpers

  /**
   * A new handle of `length` elements: in the wasm heap when this backend runs the wasm kernels (and the heap
   * can hold it), an ordinary typed array otherwise. Zero-filled unless `zero` is false (for kernels that
   * write every element).
   */
  private allocate(dtype: DType, length: number, zero = true): CpuStorage {
    const ctor = arrayTypeOf(dtype);
    checkMemoryLimit(this.live, this.memoryLimitBytes, length * ctor.BYTES_PER_ELEMENT, `a ${dtype} result of ${length} elements`);
    if (this.home && length > 0) {
      const s = this.home.allocate(ctor, length, this.live, zero ? 'zero' : 'none');
      if (s) return s;
      throw this.heapFull(`a ${dtype} result of ${length} elements`, length * ctor.BYTES_PER_ELEMENT);
    }
    return new CpuStorage(new ctor(length), this.live);
  }

  /** Heap bytes in use and the wasm32 limit (wasm kernels only), or live tensor bytes and `memoryLimitBytes` where that is lower. */
  memory(): MemoryInfo {
    const heap = this.home?.runtime.heap;
    const info = heap
      ? { usedBytes: heap.allocatedBytes, limitBytes: heap.maxBytes }
      : { usedBytes: 0, limitBytes: Number.POSITIVE_INFINITY };
    return this.memoryLimitBytes < info.limitBytes ? { usedBytes: this.live.bytes, limitBytes: this.memoryLimitBytes } : info;
  }

  /** The wasm kernels never fall back to arrays outside the heap: a tensor that does not fit is refused. */
  private heapFull(what: string, bytes: number): OutOfMemoryError {
    const { usedBytes, limitBytes } = this.memory();
    return new OutOfMemoryError(
      `cpu: the wasm heap cannot hold ${what} (${bytes} bytes): ${usedBytes} bytes are in use and the heap cannot grow past ${limitBytes} bytes (or the engine refused to grow it)`,
      what,
      bytes,
      limitBytes,
    );
  }

  private convEnv(...arrays: [CpuInfo | AnyTypedArray, AnyTypedArray | number][]): ConvEnv | undefined {
    return this.wasm ? wasmConvEnv(this.wasm, arrays) : undefined;
  }

  /** The wasm kernels, when this backend has them and every input lives in the heap. */
  private wasmFor(...inputs: CpuInfo[]): WasmKernels | null {
    const wasm = this.wasm;
    return wasm && inputs.every((t) => t.data.ptr !== 0) ? wasm : null;
  }

  /** Allocates, lets `fill` write the values, and releases the handle again if `fill` throws. */
  private output(dtype: DType, length: number, fill: (values: AnyTypedArray, ptr: number) => void, zero = true): CpuStorage {
    const s = this.allocate(dtype, length, zero);
    try {
      fill(s.values, s.ptr);
    } catch (e) {
      s.markReleased();
      throw e;
    }
    return s;
  }

  private copyOf(values: AnyTypedArray, shape: readonly number[] = [values.length]): CpuStorage {
    checkMemoryLimit(this.live, this.memoryLimitBytes, values.byteLength, `an uploaded ${dtypeOfArray(values)} tensor ${shapeStr(shape)}`);
    if (this.home && values.length > 0) {
      const dtype = dtypeOfArray(values);
      const s = this.home.allocate(arrayTypeOf(dtype), values.length, this.live, values);
      if (s) return s;
      throw this.heapFull(`an uploaded ${dtype} tensor ${shapeStr(shape)}`, values.byteLength);
    }
    return new CpuStorage(values.slice(), this.live);
  }

  private checkAlive(op: string): void {
    if (this.disposed) throw new BackendError(`cpu ${op}: the backend was disposed`);
  }

  private checkShape(op: string, shape: readonly number[]): void {
    this.checkAlive(op);
    checkShape(op, shape);
  }

  /** The values behind `t`, after checking the handle is live, ours, and matches its shape and dtype. */
  private read(op: string, t: CpuInfo): AnyTypedArray {
    this.checkAlive(op);
    return readHandle(op, t, this.live);
  }

  private readNumeric(op: string, t: CpuInfo): Numeric {
    return asNumeric(op, t, this.read(op, t));
  }

  private readFloat(op: string, t: CpuInfo): Float32Array {
    return asFloat(op, t, this.read(op, t));
  }

  private readInt(op: string, t: CpuInfo): Int32Array {
    return asInt(op, t, this.read(op, t));
  }
}
