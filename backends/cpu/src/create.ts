/**
 * The two ways to create a CpuBackend. They build the same backend (same kernels, results and threads) and
 * differ only in when the wasm kernel emitter (wasm/engine.ts and the emitters it imports, the largest part of
 * this package) is loaded: `createCpuBackend` imports it statically, `loadCpuBackend` with a dynamic
 * `import()`, which bundlers turn into a lazy chunk. Two files so that a page importing only `loadCpuBackend`
 * never pulls the emitter into its first download (this package declares no side effects but ./register).
 */
import { CpuBackend, type CpuBackendOptions } from './cpu-backend.js';
import { wasmEngine } from './wasm/engine.js';

/** A CPU backend, synchronously (Node, tests, workers): the kernel emitter is part of the importing bundle. */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options, wasmEngine);
}
