/** Node-only entry (`@dorajs/core/node`): file-system I/O that browsers cannot load. */
export * from './safetensors-file.js';
