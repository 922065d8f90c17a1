import type { Backend } from '../backend/backend.js';
import type { DType } from '../dtype.js';
import { BackendError, DTypeError } from '../errors.js';
import type { Shape } from '../tensor/shape.js';
import { fromHandle, type Tensor } from '../tensor/tensor.js';

/** The one backend all inputs live on; mixing backends is an error naming the op. */
export function backendOf(op: string, ...tensors: readonly Tensor[]): Backend {
  const b = tensors[0]!.backend;
  for (const t of tensors) {
    t.assertAlive();
    if (t.backend !== b) {
      throw new BackendError(`${op}: inputs live on different backends ('${b.name}' and '${t.backend.name}'); move them first`);
    }
  }
  return b;
}

export function requireFloat(op: string, t: Tensor): void {
  if (t.dtype !== 'float32') throw new DTypeError(`${op} needs float32, got ${t.dtype} ${'['}${t.shape.join(', ')}]`);
}

export function wrap(backend: Backend, handle: unknown, shape: Shape, dtype: DType): Tensor {
  return fromHandle(backend, handle, shape, dtype);
}
