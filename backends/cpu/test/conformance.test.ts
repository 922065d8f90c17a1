import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '../src/index.js';

// The typed-array kernels are the reference, so their vs-reference tier compares two independent instances.
defineBackendConformance({
  name: 'cpu (js kernels)',
  create: () => createCpuBackend({ kernels: 'js' }),
  reference: () => createCpuBackend({ kernels: 'js' }),
});

// The wasm kernels without FMA: the code path of every engine without relaxed SIMD.
defineBackendConformance({
  name: 'cpu (wasm kernels, no FMA)',
  create: () => createCpuBackend({ kernels: 'wasm', fma: false }),
  reference: () => createCpuBackend({ kernels: 'js' }),
});

// The FMA variant runs in test/conformance-fma.test.ts, which turns relaxed SIMD on where the engine has it behind a flag.
