/// <reference types="@webgpu/types" preserve="true" />
export { createWebGpuBackend, WebGpuBackend, type WebGpuBackendOptions, type WebGpuStats } from './backend.js';
export type { GpuTensor, MatmulTuning, MatmulVariant, WeightNormVariant } from './context.js';
export { acquireDevice, type AcquiredDevice, type DeviceRequest } from './device.js';
export {
  BackendDisposedError,
  DeviceLostError,
  GpuOutOfMemoryError,
  GpuValidationError,
  SplitTensorError,
  WebGpuUnavailableError,
} from './errors.js';
export { chooseMatmulVariant } from './kernels/matmul.js';
