export * from './dtype.js';
export * from './errors.js';
export type * from './backend/backend.js';
