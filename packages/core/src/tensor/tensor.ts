import type { Backend, TensorInfo } from '../backend/backend.js';
import { allocFor, type AnyTypedArray, type DType } from '../dtype.js';
import { BackendError, DisposedTensorError, DTypeError, ShapeError } from '../errors.js';
import type { GradNode } from './autograd.js';
import { track } from './scope.js';
import { assertValidShape, type Shape, shapeStr, sizeOf } from './shape.js';
import { Storage } from './storage.js';

let defaultBackend: Backend | null = null;

/** Sets the backend that tensor constructors use when none is given. */
export function setDefaultBackend(backend: Backend | null): void {
  defaultBackend = backend;
}

export function getDefaultBackend(): Backend {
  if (!defaultBackend) {
    throw new BackendError('no default backend: call setDefaultBackend(backend) or pass { backend } explicitly');
  }
  return defaultBackend;
}

/**
 * A dense, row-major tensor whose values live in a backend. Tensors are immutable; `Parameter` is the one
 * kind whose storage can be swapped (`assign`). Call `dispose()` (or work inside `tidy`) to free storage.
 */
export class Tensor {
  readonly shape: Shape;
  readonly dtype: DType;
  readonly size: number;
  /** @internal */ storage: Storage;
  /** @internal the operation that produced this tensor, for autograd; null for leaves. */
  node: GradNode | null = null;
  requiresGrad = false;
  /** Accumulated gradient (leaves only), set by `backward()`. */
  grad: Tensor | null = null;
  private disposedFlag = false;

  /** @internal use the factory functions or ops; takes one reference on `storage`. */
  constructor(storage: Storage, shape: Shape, tracked = true) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = storage.dtype;
    this.size = sizeOf(shape);
    if (this.size !== storage.size) {
      throw new ShapeError(`shape ${shapeStr(shape)} holds ${this.size} elements, storage has ${storage.size}`);
    }
    if (tracked) track(this);
  }

  get backend(): Backend {
    return this.storage.backend;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposedFlag;
  }

  /** What kernels receive. */
  get info(): TensorInfo {
    this.assertAlive();
    return { data: this.storage.data, shape: this.shape, dtype: this.dtype };
  }

  assertAlive(): void {
    if (this.disposedFlag) throw new DisposedTensorError(`tensor ${shapeStr(this.shape)} ${this.dtype} used after dispose()`);
  }

  /** Reads the values back (the only place a GPU backend waits). */
  async data(): Promise<AnyTypedArray> {
    return this.backend.download(this.info);
  }

  /** Values as a Float32Array (int tensors are converted). */
  async float32(): Promise<Float32Array> {
    const d = await this.data();
    return d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
  }

  /** Nested arrays, for tests and printing small tensors. */
  async array(): Promise<unknown> {
    const flat = Array.from((await this.data()) as ArrayLike<number>);
    const build = (dim: number, offset: number): unknown => {
      if (dim === this.shape.length) return flat[offset];
      const stride = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim]! }, (_, i) => build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }

  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.storage.release();
    this.node?.decRef();
    this.grad?.dispose();
    this.grad = null;
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}, ${this.backend.name})`;
  }
}

/**
 * A trainable leaf. Its storage can be replaced in place (`assign`) — loading weights, merging adapters,
 * optimizer steps — and `version` counts those replacements so caches can tell they are stale.
 */
export class Parameter extends Tensor {
  version = 0;

  constructor(value: Tensor, requiresGrad = true) {
    value.assertAlive();
    super(value.storage.retain(), value.shape, false);
    this.requiresGrad = requiresGrad;
  }

  /**
   * Replaces the values with `value`'s (same shape and dtype); the caller keeps ownership of `value`.
   * `changeDtype` lets a loader store a checkpoint at its own width (a frozen bfloat16 weight, say).
   */
  assign(value: Tensor, options: { readonly changeDtype?: boolean } = {}): void {
    value.assertAlive();
    if (value.shape.length !== this.shape.length || value.shape.some((d, i) => d !== this.shape[i])) {
      throw new ShapeError(`assign: parameter is ${shapeStr(this.shape)}, value is ${shapeStr(value.shape)}`);
    }
    if (value.dtype !== this.dtype) {
      if (!options.changeDtype) throw new DTypeError(`assign: parameter is ${this.dtype}, value is ${value.dtype}`);
      (this as { dtype: DType }).dtype = value.dtype;
    }
    if (value.storage === this.storage) return;
    const old = this.storage;
    this.storage = value.storage.retain();
    old.release();
    this.version++;
  }

  /** Moves the values to another backend (same shape/dtype). */
  async moveTo(backend: Backend): Promise<void> {
    if (backend === this.backend) return;
    const values = await this.data();
    const moved = new Storage(backend, backend.upload(values, this.shape, this.dtype), this.dtype, this.size);
    const old = this.storage;
    this.storage = moved;
    old.release();
    this.version++;
  }
}

export interface CreateOptions {
  readonly backend?: Backend;
  readonly dtype?: DType;
  readonly requiresGrad?: boolean;
}

type NestedNumbers = number | readonly NestedNumbers[];

function inferShape(values: NestedNumbers): number[] {
  const shape: number[] = [];
  let v: NestedNumbers = values;
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = (v as readonly NestedNumbers[])[0] ?? 0;
  }
  return shape;
}

/** Wraps a backend handle that the caller hands over (used by ops). */
export function fromHandle(backend: Backend, data: unknown, shape: Shape, dtype: DType): Tensor {
  return new Tensor(new Storage(backend, data, dtype, sizeOf(shape)), shape);
}

/** Creates a tensor from host values: a typed array with a shape, or nested arrays. */
export function tensor(values: AnyTypedArray | NestedNumbers, shape?: Shape, options: CreateOptions = {}): Tensor {
  const backend = options.backend ?? getDefaultBackend();
  let flat: AnyTypedArray;
  let dtype: DType;
  if (ArrayBuffer.isView(values)) {
    flat = values;
    dtype = options.dtype ?? (values instanceof Int32Array ? 'int32' : values instanceof Float32Array ? 'float32' : 'float32');
    if (!(values instanceof Float32Array) && !(values instanceof Int32Array) && options.dtype === undefined) {
      throw new DTypeError(`tensor(): pass { dtype } for a ${values.constructor.name}`);
    }
  } else {
    dtype = options.dtype ?? 'float32';
    const nums = (Array.isArray(values) ? (values as unknown[]).flat(Infinity) : [values]) as number[];
    flat = allocFor(dtype, nums.length);
    flat.set(nums);
  }
  const s = shape ?? (ArrayBuffer.isView(values) ? [values.length] : inferShape(values));
  assertValidShape(s);
  if (sizeOf(s) !== flat.length) {
    throw new ShapeError(`tensor(): ${flat.length} values do not fill shape ${shapeStr(s)}`);
  }
  const t = fromHandle(backend, backend.upload(flat, s, dtype), s, dtype);
  if (options.requiresGrad) t.requiresGrad = true;
  return t;
}

export function full(shape: Shape, value: number, options: CreateOptions = {}): Tensor {
  const backend = options.backend ?? getDefaultBackend();
  assertValidShape(shape);
  const dtype = options.dtype ?? 'float32';
  const t = fromHandle(backend, backend.fill(shape, value, dtype), shape, dtype);
  if (options.requiresGrad) t.requiresGrad = true;
  return t;
}

export const zeros = (shape: Shape, options: CreateOptions = {}): Tensor => full(shape, 0, options);
export const ones = (shape: Shape, options: CreateOptions = {}): Tensor => full(shape, 1, options);

/** A scalar (shape []) float32 tensor on the same backend as `like`. */
export function scalarLike(value: number, like: Tensor): Tensor {
  return full([], value, { backend: like.backend, dtype: like.dtype === 'int32' ? 'int32' : 'float32' });
}
