/**
 * The shared conformance suite on both tfjs backends this package supports in Node, against the CPU
 * backend as reference. (webgl/webgpu need a browser or GPU and are not run here.)
 */
import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createTfjsBackend } from '../src/index.js';
import { TF_BACKENDS } from './helpers.js';

for (const tfBackend of TF_BACKENDS) {
  defineBackendConformance({
    name: `tfjs-${tfBackend}`,
    create: () => createTfjsBackend({ tfBackend }),
    // The typed-array kernels are the reference implementation (the wasm ones are checked against them too).
    reference: () => createCpuBackend({ kernels: 'js' }),
  });
}
