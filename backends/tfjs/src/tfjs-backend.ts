/**
 * The dorajs Backend contract on TensorFlow.js. The storage handle is a tf.Tensor owned by this backend:
 * every kernel returns a fresh tensor (intermediates are freed by tf.tidy) and `release` disposes it.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  BackendError,
  DisposedTensorError,
  DTypeError,
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
} from '@dorajs/core';
import { conv2dBackpropFilter, conv2dBackpropInput, conv2dForward } from './conv2d.js';
import { affine, BINARY, select, UNARY } from './elementwise.js';
import { batchedMatMul } from './matmul.js';
import { formatShape, sameShape, sizeOf } from './shapes.js';
import { activateTfBackend, type TfRuntimeInfo } from './tf-runtime.js';
import { weightNorm } from './weight-norm.js';

export type TfInfo = TensorInfo<tf.Tensor>;

/** The dtypes tfjs computes in; narrow storage types are widened by core before they reach a backend. */
const DTYPES = ['float32', 'int32'] as const satisfies readonly DType[];
type TfDType = (typeof DTYPES)[number];

const REDUCERS: Readonly<Record<ReduceOp, (x: tf.Tensor, axes: number[]) => tf.Tensor>> = {
  sum: (x, axes) => tf.sum(x, axes, true),
  max: (x, axes) => tf.max(x, axes, true),
  min: (x, axes) => tf.min(x, axes, true),
  mean: (x, axes) => tf.mean(x, axes, true),
};

export class TfjsBackend implements Backend<tf.Tensor> {
  readonly name = 'tfjs';
  readonly capabilities: BackendCapabilities;
  /** The tfjs backend this instance computes on, and what it offers. */
  readonly runtime: TfRuntimeInfo;
  private readonly live = new Set<tf.Tensor>();
  private disposed = false;

  constructor(runtime: TfRuntimeInfo) {
    this.runtime = runtime;
    this.capabilities = { dtypes: DTYPES, offHost: runtime.offHost };
  }

  // ---- storage

  upload(values: TypedArrayFor<DType>, shape: readonly number[], dtype: DType): tf.Tensor {
    const tfDtype = this.checkDtype('upload', dtype);
    if (values.length !== sizeOf(shape)) {
      throw new ShapeError(`tfjs upload: ${values.length} values do not fill shape ${formatShape(shape)}`);
    }
    this.activate();
    // tfjs-cpu (and webgl until first use) keep the caller's array by reference; the contract promises a copy.
    // The wasm backend copies into its heap itself.
    const owned = this.runtime.name === 'wasm' ? values : values.slice();
    return this.own(tf.tensor(owned as Float32Array | Int32Array, [...shape], tfDtype));
  }

  async download(t: TfInfo): Promise<TypedArrayFor<DType>> {
    this.checkAlive('download', [t]);
    this.activate();
    const values = await t.data.data();
    const Want = t.dtype === 'int32' ? Int32Array : Float32Array;
    // tfjs-cpu casts int32/bool → float32 without converting (the float32 tensor keeps an Int32Array or
    // Uint8Array); converting here also rounds as a real float32 would (2²⁴ + 1 → 2²⁴).
    if (!(values instanceof Want)) return Want.from(values as ArrayLike<number>) as TypedArrayFor<DType>;
    // tfjs-cpu hands out its backing array; copy so the caller may mutate the result (wasm already copied).
    return (this.runtime.name === 'wasm' ? values : values.slice()) as TypedArrayFor<DType>;
  }

  release(data: tf.Tensor): void {
    if (!this.live.delete(data)) {
      throw new DisposedTensorError(
        `tfjs release: tensor ${formatShape(data.shape)} (${data.dtype}) is not live in this backend (released twice?)`,
      );
    }
    data.dispose();
  }

  liveBuffers(): number {
    return this.live.size;
  }

  fill(shape: readonly number[], value: number, dtype: DType): tf.Tensor {
    const tfDtype = this.checkDtype('fill', dtype);
    return this.run('fill', [], shape, tfDtype, () => tf.fill([...shape], value, tfDtype));
  }

  // ---- linear algebra

  matmul(a: TfInfo, b: TfInfo, options: MatMulOptions, outShape: readonly number[]): tf.Tensor {
    return this.run('matmul', [a, b], outShape, 'float32', () =>
      batchedMatMul(view(a), view(b), options.transposeA ?? false, options.transposeB ?? false, outShape),
    );
  }

  // ---- elementwise

  binary(op: BinaryOp, a: TfInfo, b: TfInfo, outShape: readonly number[]): tf.Tensor {
    const dtype = op === 'greater' || op === 'equal' ? 'float32' : a.dtype;
    return this.run(op, [a, b], outShape, dtype, () => BINARY[op](view(a), view(b)));
  }

  unary(op: UnaryOp, a: TfInfo): tf.Tensor {
    return this.run(op, [a], a.shape, a.dtype, () => UNARY[op](view(a)));
  }

  affine(a: TfInfo, scale: number, offset: number): tf.Tensor {
    return this.run('affine', [a], a.shape, a.dtype, () => affine(view(a), scale, offset));
  }

  where(cond: TfInfo, a: TfInfo, b: TfInfo, outShape: readonly number[]): tf.Tensor {
    return this.run('where', [cond, a, b], outShape, a.dtype, () => select(view(cond), view(a), view(b)));
  }

  // ---- reductions

  reduce(op: ReduceOp, a: TfInfo, axes: readonly number[], outShape: readonly number[]): tf.Tensor {
    return this.run(`reduce.${op}`, [a], outShape, a.dtype, () => REDUCERS[op](view(a), [...axes]));
  }

  argMax(a: TfInfo): tf.Tensor {
    return this.run('argMax', [a], a.shape.slice(0, -1), 'int32', () => {
      const x = view(a);
      // tfjs skips NaN; PyTorch (and the reference) treat NaN as the maximum.
      return tf.argMax(x.dtype === 'float32' ? tf.where(tf.isNaN(x), tf.fill(x.shape, Infinity), x) : x, -1);
    });
  }

  softmax(a: TfInfo, log: boolean): tf.Tensor {
    return this.run(log ? 'logSoftmax' : 'softmax', [a], a.shape, a.dtype, () =>
      log ? tf.logSoftmax(view(a), -1) : tf.softmax(view(a), -1),
    );
  }

  // ---- indexing

  gather(table: TfInfo, indices: TfInfo): tf.Tensor {
    const n = sizeOf(indices.shape);
    return this.run('gather', [table, indices], [n, table.shape[1]!], table.dtype, () =>
      tf.gather(view(table), tf.reshape(indices.data, [n]), 0),
    );
  }

  scatterAdd(indices: TfInfo, updates: TfInfo, numRows: number): tf.Tensor {
    const n = sizeOf(indices.shape);
    const cols = n === 0 ? (updates.shape[updates.shape.length - 1] ?? 1) : sizeOf(updates.shape) / n;
    return this.run('scatterAdd', [indices, updates], [numRows, cols], updates.dtype, () =>
      n === 0
        ? tf.zeros([numRows, cols], updates.dtype as TfDType)
        : // tf.scatterND sums the updates of repeated indices, which is exactly scatter-add.
          tf.scatterND(tf.reshape(indices.data, [n, 1]), tf.reshape(updates.data, [n, cols]), [numRows, cols]),
    );
  }

  // ---- layout

  transpose(a: TfInfo, perm: readonly number[]): tf.Tensor {
    return this.run(
      'transpose',
      [a],
      perm.map((p) => a.shape[p]!),
      a.dtype,
      () => tf.transpose(view(a), [...perm]),
    );
  }

  slice(a: TfInfo, begin: readonly number[], size: readonly number[]): tf.Tensor {
    return this.run('slice', [a], size, a.dtype, () => tf.slice(view(a), [...begin], [...size]));
  }

  concat(tensors: readonly TfInfo[], axis: number, outShape: readonly number[]): tf.Tensor {
    return this.run('concat', tensors, outShape, tensors[0]?.dtype ?? 'float32', () => tf.concat(tensors.map(view), axis));
  }

  cast(a: TfInfo, dtype: DType): tf.Tensor {
    const tfDtype = this.checkDtype('cast', dtype);
    return this.run('cast', [a], a.shape, tfDtype, () => tf.cast(view(a), tfDtype));
  }

  // ---- convolution

  conv2d(x: TfInfo, w: TfInfo, p: Conv2dParams, outShape: readonly number[]): tf.Tensor {
    return this.run('conv2d', [x, w], outShape, 'float32', () => conv2dForward(view4(x), view4(w), p));
  }

  conv2dBackpropInput(dy: TfInfo, w: TfInfo, p: Conv2dParams, xShape: readonly number[]): tf.Tensor {
    return this.run('conv2dBackpropInput', [dy, w], xShape, 'float32', () => conv2dBackpropInput(view4(dy), view4(w), p, xShape));
  }

  conv2dBackpropFilter(x: TfInfo, dy: TfInfo, p: Conv2dParams, wShape: readonly number[]): tf.Tensor {
    return this.run('conv2dBackpropFilter', [x, dy], wShape, 'float32', () => conv2dBackpropFilter(view4(x), view4(dy), p, wShape));
  }

  // ---- fused

  weightNorm(w: TfInfo, a: TfInfo, b: TfInfo, scale: number, options: WeightNormOptions): tf.Tensor {
    const transposeW = options.transposeW ?? false;
    const out = b.shape[0]!;
    return this.run('weightNorm', [w, a, b], [out], 'float32', () =>
      weightNorm(view(w), view(a), view(b), scale, transposeW, !this.runtime.offHost),
    );
  }

  // ---- interop

  /**
   * Takes a tf.Tensor into this backend without copying its data: the handle is a new tf.Tensor sharing the
   * data buffer, so core may release it while the caller keeps (and must still dispose) the original.
   * 'bool' tensors become float32 1/0, as the contract's comparisons do (that one is a copy).
   */
  adopt(tensor: tf.Tensor): tf.Tensor {
    if (tensor.isDisposed) throw new DisposedTensorError(`tfjs adopt: the tf.Tensor ${formatShape(tensor.shape)} is disposed`);
    if (tensor.dtype === 'bool') return this.run('adopt', [], null, 'float32', () => tf.cast(tensor, 'float32'));
    const dtype = this.checkDtype('adopt', tensor.dtype);
    return this.run('adopt', [], null, dtype, () => alias(tensor));
  }

  /**
   * A new tf.Tensor sharing the handle's data (no copy), shaped as `info` says. The caller owns and disposes
   * it; it stays valid after core releases the handle.
   */
  tfTensorOf(info: TfInfo): tf.Tensor {
    this.checkAlive('tfTensorOf', [info]);
    this.activate();
    return alias(info.data, info.shape);
  }

  // ---- lifecycle

  async sync(): Promise<void> {
    // cpu and wasm compute synchronously; GPU tfjs backends only wait on reads, which `download` does.
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.live) t.dispose();
    this.live.clear();
  }

  // ---- internals

  private activate(): void {
    if (this.disposed) throw new BackendError(`tfjs backend (${this.runtime.name}) used after dispose()`);
    activateTfBackend(this.runtime.name);
  }

  /** Registers a result as a live handle. tf.keep: a tf.tidy of the caller's must not dispose core's storage. */
  private own(t: tf.Tensor): tf.Tensor {
    this.live.add(tf.keep(t));
    return t;
  }

  /**
   * Runs one kernel: activates this instance's tfjs backend, frees intermediates, checks the result's shape
   * against the caller's `outShape`, casts it to the dtype core declares for the op, and turns tfjs' plain errors into typed ones naming the op and shapes.
   */
  private run(
    op: string,
    inputs: readonly TfInfo[],
    outShape: readonly number[] | null,
    outDtype: DType,
    compute: () => tf.Tensor,
  ): tf.Tensor {
    this.activate();
    let out: tf.Tensor;
    try {
      out = tf.tidy(() => {
        let result = compute();
        // tfjs promotes differently (mean of int32 is float32, …); core declares the dtype, so follow it.
        if (result.dtype !== outDtype) result = tf.cast(result, this.checkDtype(op, outDtype));
        // Core releases outputs and inputs independently, so never hand back an input's own tensor.
        return inputs.some((i) => i.data === result) ? alias(result) : result;
      });
    } catch (e) {
      this.checkAlive(op, inputs);
      if (e instanceof BackendError || e instanceof ShapeError || e instanceof DTypeError) throw e;
      throw new BackendError(`tfjs ${op} on ${describe(inputs)} failed: ${(e as Error).message}`, { cause: e });
    }
    if (outShape !== null && !sameShape(out.shape, outShape)) {
      out.dispose();
      throw new ShapeError(
        `tfjs ${op} on ${describe(inputs)} produced ${formatShape(out.shape)}, the caller expects ${formatShape(outShape)}`,
      );
    }
    return this.own(out);
  }

  private checkAlive(op: string, inputs: readonly TfInfo[]): void {
    const i = inputs.findIndex((t) => t.data.isDisposed);
    if (i >= 0) {
      throw new DisposedTensorError(`tfjs ${op}: input ${i} ${formatShape(inputs[i]!.shape)} was already released`);
    }
  }

  private checkDtype(op: string, dtype: string): TfDType {
    if ((DTYPES as readonly string[]).includes(dtype)) return dtype as TfDType;
    throw new DTypeError(`tfjs ${op}: dtype '${dtype}' is not supported (tfjs stores ${DTYPES.join(', ')})`);
  }
}

/**
 * A new tf.Tensor on the same data buffer (tfjs reference-counts it). tf.reshape is the one op that aliases on
 * every tfjs backend; tf.clone copies on wasm.
 */
export function alias(t: tf.Tensor, shape: readonly number[] = t.shape): tf.Tensor {
  return tf.reshape(t, [...shape]);
}

/** The handle seen with the shape core gives it: core's views (reshape) never reach the backend. */
function view(info: TfInfo): tf.Tensor {
  return sameShape(info.data.shape, info.shape) ? info.data : tf.reshape(info.data, [...info.shape]);
}

function view4(info: TfInfo): tf.Tensor4D {
  if (info.shape.length !== 4) throw new ShapeError(`tfjs conv2d: expected a 4-D tensor, got ${formatShape(info.shape)}`);
  return view(info) as tf.Tensor4D;
}

function describe(inputs: readonly TfInfo[]): string {
  return inputs.length ? inputs.map((t) => `${formatShape(t.shape)} ${t.dtype}`).join(', ') : 'no inputs';
}
