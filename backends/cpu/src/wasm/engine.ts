/**
 * The wasm side of a CpuBackend that only exists once the kernel module is at hand: the compiled kernel
 * variant, the host-side kernels (kernels.ts, narrow-host.ts) and the worker pool. The backend class gets this
 * factory handed in (it never imports this file): `createCpuBackend` imports it statically, `loadCpuBackend`
 * with a dynamic `import()`, so a page that only calls `loadCpuBackend` downloads the emitter as a lazy chunk.
 */
import { threadHost } from './host.js';
import { KERNEL_MODULE } from './kernel-module.js';
import { WasmKernels } from './kernels.js';
import { NarrowKernels } from './narrow-host.js';
import { WorkerPool } from './pool.js';
import type { WasmRuntime } from './runtime.js';

export interface WasmEngine {
  readonly wasm: WasmKernels;
  readonly narrow: NarrowKernels;
  /** Worker threads, when more than one thread was asked for and the memory is shared. */
  readonly pool: WorkerPool | null;
}

/** Builds the wasm kernels of one backend on `runtime` (the thread's shared runtime). */
export type WasmEngineFactory = (runtime: WasmRuntime, fma: boolean, splitThreshold: number, threads: number) => WasmEngine;

export const wasmEngine: WasmEngineFactory = (runtime, fma, splitThreshold, threads) => {
  const variant = runtime.variant(fma, KERNEL_MODULE);
  const wasm = new WasmKernels(runtime, variant, splitThreshold);
  const narrow = new NarrowKernels(wasm);
  // Worker threads need the shared memory (a page that is not cross-origin isolated has none).
  const host = threads > 1 && runtime.shared ? threadHost() : null;
  let pool: WorkerPool | null = null;
  if (host) {
    pool = new WorkerPool(host, runtime, variant, threads, host.canBlock);
    wasm.runner = pool;
  }
  return { wasm, narrow, pool };
};
