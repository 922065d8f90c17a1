/**
 * @dorajs/backend-tfjs: the dorajs Backend contract on TensorFlow.js (tfjs-core ops over its cpu, wasm,
 * webgl or webgpu backends), with zero-copy interop with tf.Tensor.
 */
import { TfjsBackend } from './tfjs-backend.js';
import { startTfRuntime, type TfRuntimeOptions } from './tf-runtime.js';

export type TfjsBackendOptions = TfRuntimeOptions;

/** Starts the requested tfjs backend (default 'cpu') and returns a dorajs Backend named 'tfjs' on it. */
export async function createTfjsBackend(options: TfjsBackendOptions = {}): Promise<TfjsBackend> {
  return new TfjsBackend(await startTfRuntime(options));
}

export { TfjsBackend, type TfInfo } from './tfjs-backend.js';
export type { TfRuntimeInfo, TfRuntimeOptions } from './tf-runtime.js';
export { fromTf, toTf } from './interop.js';
