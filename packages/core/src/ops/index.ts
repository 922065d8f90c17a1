export * from './elementwise.js';
export * from './fused.js';
export * from './layout.js';
export * from './matmul.js';
export * from './nn.js';
export * from './reduce.js';
export * from './narrow.js';
export * from './conv-nd.js';
