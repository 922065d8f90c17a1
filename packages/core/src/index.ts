export * from './dtype.js';
export * from './errors.js';
export type * from './backend/backend.js';
export * from './backend/registry.js';
export * from './io/host-tensor.js';
export * from './io/safetensors.js';
