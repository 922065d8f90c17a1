export { CpuBackend, type CpuBackendOptions, type CpuInfo } from './cpu-backend.js';
export { createCpuBackend } from './create.js';
export { loadCpuBackend } from './load.js';
export type { CpuStorage } from './storage.js';
