/** The shared conformance suite on WebGPU (llvmpipe in CI), against the CPU backend as reference. */
import { describe, it } from 'vitest';
import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { setupGpu } from './helpers/gpu.js';

const { backend, skipReason } = await setupGpu();

if (backend) {
  defineBackendConformance({
    name: 'webgpu',
    create: () => backend,
    // The typed-array kernels are the reference implementation (the wasm ones are checked against them too).
    reference: () => createCpuBackend({ kernels: 'js' }),
    skip: {
      'fused/weightNorm.tiny-magnitudes':
        'float32 accumulation of squares underflows for |W| ≈ 1e-25; the kernel does not rescale rows (known gap)',
    },
  });
} else {
  describe('webgpu conformance', () => {
    it.skip(skipReason, () => {});
  });
}
