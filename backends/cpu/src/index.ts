export { CpuBackend, createCpuBackend, type CpuBackendOptions, type CpuInfo } from './cpu-backend.js';
export type { CpuStorage } from './storage.js';
