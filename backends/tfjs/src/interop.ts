/**
 * tf.Tensor ⇄ dorajs interop at the Backend level (TensorInfo), without copying data.
 *
 * - `fromTf(backend, tensor)` → a TensorInfo owned by dorajs (release it with `backend.release(info.data)`);
 *   the caller's tensor stays valid and stays the caller's to dispose.
 * - `toTf(backend, info)` → a tf.Tensor owned by the caller (dispose it); it stays valid after dorajs
 *   releases the handle.
 * Both share tfjs' reference-counted data buffer (tf.clone), so neither copies.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { TfInfo, TfjsBackend } from './tfjs-backend.js';

export function fromTf(backend: TfjsBackend, tensor: tf.Tensor): TfInfo {
  const data = backend.adopt(tensor);
  return { data, shape: data.shape, dtype: data.dtype as TfInfo['dtype'] };
}

export function toTf(backend: TfjsBackend, info: TfInfo): tf.Tensor {
  const borrowed = backend.tfTensorOf(info);
  // A reshape made by tfTensorOf is already a fresh tensor the caller can own; otherwise clone the handle.
  return borrowed === info.data ? borrowed.clone() : borrowed;
}
