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

/**
 * What a two-input op's backward saves, as PyTorch does: `a` only where some gradient needs it (`needA`),
 * `b` likewise — a frozen operand's partner is not kept (x·cos in RoPE keeps cos, not x). Returns the
 * saved list and how to read a and b back from it.
 */
export function savePair(
  a: Tensor,
  b: Tensor,
  needA: boolean,
  needB: boolean,
): [Tensor[], (s: readonly Tensor[]) => [Tensor | undefined, Tensor | undefined]] {
  if (needA && needB) return [[a, b], (s) => [s[0], s[1]]];
  if (needA) return [[a], (s) => [s[0], undefined]];
  if (needB) return [[b], (s) => [undefined, s[0]]];
  return [[], () => [undefined, undefined]];
}
