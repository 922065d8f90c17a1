/**
 * Typed errors of the WebGPU backend. All extend core's `BackendError`, so callers that only know core
 * can still catch them; each message names the op, the shapes or the limit involved.
 */
import { BackendError } from '@dorajs/core';

/** No WebGPU adapter or device could be obtained; `attempts` lists what was tried and why it failed. */
export class WebGpuUnavailableError extends BackendError {
  static override readonly typeName: string = 'WebGpuUnavailableError';
  constructor(readonly attempts: readonly string[]) {
    super(`no WebGPU device available: ${attempts.join('; ')}`);
  }
}

/** The GPUDevice was lost (destroyed, driver reset, removed); the backend is unusable afterwards. */
export class DeviceLostError extends BackendError {
  static override readonly typeName: string = 'DeviceLostError';
  constructor(
    readonly reason: string,
    readonly detail: string,
  ) {
    super(`WebGPU device lost (${reason})${detail ? `: ${detail}` : ''}`);
  }
}

/** A buffer could not be allocated: over the device's limits, or the device ran out of memory. */
export class GpuOutOfMemoryError extends BackendError {
  static override readonly typeName: string = 'GpuOutOfMemoryError';
  constructor(
    message: string,
    readonly requestedBytes: number,
  ) {
    super(message);
  }
}

/** The device rejected a shader or a command (a bug in this backend, reported with the program name). */
export class GpuValidationError extends BackendError {
  static override readonly typeName: string = 'GpuValidationError';
}

/** The backend was used after `dispose()`. */
export class BackendDisposedError extends BackendError {
  static override readonly typeName: string = 'BackendDisposedError';
}

/**
 * A tensor stored over several buffers (larger than one buffer may be, see `split.ts`) reached a kernel
 * that does not take split tensors, or was split in a way the kernel cannot follow.
 */
export class SplitTensorError extends BackendError {
  static override readonly typeName: string = 'SplitTensorError';
}
