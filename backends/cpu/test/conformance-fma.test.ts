/**
 * The conformance suite on the wasm kernels with relaxed-SIMD FMA. Node 20 has relaxed SIMD behind a V8 flag
 * (later Node versions ship it); setting the flag at run time works for modules compiled afterwards, and
 * vitest runs each test file in its own process, so it does not leak into the other files.
 */
import { setFlagsFromString } from 'node:v8';
import { defineBackendConformance } from '@dorajs/backend-conformance';
import { describe, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';
import { wasmFeatures } from '../src/wasm/features.js';

if (Number(process.versions.node.split('.')[0]) < 22) setFlagsFromString('--experimental-wasm-relaxed-simd');

if (wasmFeatures().relaxedSimd) {
  defineBackendConformance({
    name: 'cpu (wasm kernels, relaxed-SIMD FMA)',
    create: () => {
      const backend = createCpuBackend({ kernels: 'wasm', fma: true });
      if (!backend.fma) throw new Error('relaxed SIMD validates but the backend did not turn FMA on');
      return backend;
    },
    reference: () => createCpuBackend({ kernels: 'js' }),
  });
} else {
  describe('cpu (wasm kernels, relaxed-SIMD FMA)', () => {
    it.skip('skipped: this engine has no relaxed SIMD', () => {});
  });
}
