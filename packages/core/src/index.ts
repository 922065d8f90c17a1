export * from './dtype.js';
export * from './errors.js';
export type * from './backend/backend.js';
export * from './backend/registry.js';
