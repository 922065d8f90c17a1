/**
 * The conformance suite on the wasm kernels with two threads and no minimum size for splitting, so every
 * kernel that can split does, even on the suite's small inputs (GEMM tiles, GEMV chunks, weight-norm rows
 * and columns across the worker and the calling thread).
 */
import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '../src/index.js';

defineBackendConformance({
  name: 'cpu (wasm kernels, 2 threads)',
  create: async () => {
    const backend = createCpuBackend({ kernels: 'wasm', threads: 2, splitThreshold: 0 });
    if (backend.threads !== 2) throw new Error(`expected 2 threads, the backend uses ${backend.threads}`);
    await backend.ready();
    return backend;
  },
  reference: () => createCpuBackend({ kernels: 'js' }),
});
