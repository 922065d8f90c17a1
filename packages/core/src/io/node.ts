/** Node-only entry (`@dorajs/core/node`): file-system I/O that browsers cannot load. */
export * from './safetensors-file.js';
export * from './atomic.js';
export * from './file-system.js';
export * from './regular-file.js';
export * from './fault-injection.js';
export { directorySource, openFileReader } from './source/node-directory.js';
