/**
 * tf.Tensor ⇄ dorajs Tensor, without copying data (tfjs' reference-counted buffers are shared).
 *
 *   fromTf(tfTensor, backend): Tensor   — dorajs owns the result (dispose it); the tf.Tensor stays the
 *                                         caller's, valid and to be disposed by the caller.
 *   toTf(tensor): tf.Tensor             — the caller owns the result (dispose it); it stays valid after the
 *                                         dorajs tensor is disposed. `tensor` must live on a TfjsBackend.
 *
 * 'bool' tf tensors become float32 1/0 (a copy); complex64 and string are refused.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { BackendError, fromHandle, type DType, type Tensor } from '@dorajs/core';
import { TfjsBackend, type TfInfo } from './tfjs-backend.js';

export function fromTf(tensor: tf.Tensor, backend: TfjsBackend): Tensor {
  const handle = backend.adopt(tensor);
  return fromHandle(backend, handle, handle.shape, handle.dtype as DType);
}

export function toTf(tensor: Tensor): tf.Tensor {
  const backend = tensor.backend;
  if (!(backend instanceof TfjsBackend)) {
    throw new BackendError(
      `toTf: tensor ${tensor.toString()} lives on backend '${backend.name}', not on a TfjsBackend; ` +
        `create it on createTfjsBackend() or move it there (Parameter.moveTo) first`,
    );
  }
  return backend.tfTensorOf(tensor.info as TfInfo);
}
