import { defineBackendConformance } from '@dorajs/backend-conformance';
import { createCpuBackend } from '../src/index.js';

// The typed-array kernels are the reference the other backends are compared with: no vs-reference tier
// for them (it would compare them with themselves); the other tiers check them against float64 host values.
defineBackendConformance({
  name: 'cpu (js kernels)',
  create: () => createCpuBackend({ kernels: 'js' }),
  reference: null,
});

// The wasm kernels without FMA: the code path of every engine without relaxed SIMD.
defineBackendConformance({
  name: 'cpu (wasm kernels, no FMA)',
  create: () => createCpuBackend({ kernels: 'wasm', fma: false }),
  reference: () => createCpuBackend({ kernels: 'js' }),
});

// The FMA variant runs in test/conformance-fma.test.ts, which turns relaxed SIMD on where the engine has it behind a flag.
