export * from './dora.js';
export * from './geometry.js';
