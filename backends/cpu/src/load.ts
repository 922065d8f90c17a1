/** `loadCpuBackend`: the asynchronous way to create a CpuBackend (see create.ts), the one to use in pages. */
import { CpuBackend, type CpuBackendOptions } from './cpu-backend.js';
import { WasmRuntime } from './wasm/runtime.js';

/**
 * A CPU backend, loading the wasm kernel emitter first with a dynamic `import()` (a lazy chunk in a bundled
 * page, fetched only here, and not at all for `kernels: 'js'` or an engine without WebAssembly SIMD). The
 * backend is the same as `createCpuBackend(options)` gives: same kernels, same results, same threads; invalid
 * options reject with the same ConfigError.
 */
export async function loadCpuBackend(options: CpuBackendOptions = {}): Promise<CpuBackend> {
  const wasm = options.kernels !== 'js' && WasmRuntime.get() !== null;
  const engine = wasm ? (await import('./wasm/engine.js')).wasmEngine : undefined;
  return new CpuBackend(options, engine);
}
