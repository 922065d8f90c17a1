/**
 * Starting a TensorFlow.js backend (cpu, wasm, or any registered one such as webgl) and switching the global
 * tfjs engine to it.
 *
 * tfjs has ONE active backend per process. Each dorajs TfjsBackend is bound to one tfjs backend name and makes
 * it active before every kernel; once a tfjs backend is initialised, `tf.setBackend` switches synchronously
 * (its async body reaches no `await`), and tfjs moves tensor data between backends on first use.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BackendError } from '@dorajs/core';
import { nodeWasmDir } from '#wasm-dir';

export interface TfRuntimeOptions {
  /**
   * The tfjs backend to run on: 'cpu' (default), 'wasm' (needs `@tensorflow/tfjs-backend-wasm`), or the name
   * of any backend already registered with tfjs (import `@tensorflow/tfjs-backend-webgl` first for 'webgl').
   */
  readonly tfBackend?: 'cpu' | 'wasm' | (string & {});
  /**
   * Where the tfjs-backend-wasm `.wasm` files are served from (a URL prefix ending in '/', or a file map).
   * In Node the package's own `dist/` folder is used when this is absent.
   */
  readonly wasmPaths?: string | Readonly<Record<string, string>>;
  /** Threads for tfjs-backend-wasm where tfjs supports them (browsers with cross-origin isolation). */
  readonly wasmThreads?: number;
}

/** What the started tfjs backend offers. */
export interface TfRuntimeInfo {
  readonly name: string;
  /** Threads the tfjs backend computes with (tfjs-wasm is single-threaded in Node: tfjs issue 3830). */
  readonly threads: number;
  /** Whether the wasm backend runs its SIMD build (undefined for other backends). */
  readonly simd?: boolean;
  /** Tensors live in GPU memory (webgl, webgpu). */
  readonly offHost: boolean;
}

type WasmModule = typeof import('@tensorflow/tfjs-backend-wasm');

const ON_HOST = new Set(['cpu', 'wasm', 'tensorflow']);

/** Registers, initialises and activates the requested tfjs backend. */
export async function startTfRuntime(options: TfRuntimeOptions = {}): Promise<TfRuntimeInfo> {
  const name = options.tfBackend ?? 'cpu';
  const wasm = name === 'wasm' ? await loadWasm(options) : undefined;
  if (tf.findBackendFactory(name) === null) {
    throw new BackendError(
      `tfjs backend '${name}' is not registered (registered: ${registeredTfBackends().join(', ')}; ` +
        `import its package, e.g. '@tensorflow/tfjs-backend-${name}', before creating the dorajs backend)`,
    );
  }
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new BackendError(`tfjs backend '${name}' failed to initialise: ${(e as Error).message}`, { cause: e });
  }
  if (!ok) throw new BackendError(`tfjs backend '${name}' failed to initialise (tf.setBackend returned false)`);
  return {
    name,
    threads: wasm ? wasm.getThreadsCount() : 1,
    ...(wasm ? { simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) } : {}),
    offHost: !ON_HOST.has(name),
  };
}

/** Makes `name` the active tfjs backend; synchronous because `startTfRuntime` already initialised it. */
export function activateTfBackend(name: string): void {
  if (tf.getBackend() === name) return;
  if (tf.findBackend(name) === null) {
    throw new BackendError(`tfjs backend '${name}' is no longer initialised (was tf.removeBackend called?)`);
  }
  void tf.setBackend(name);
}

function registeredTfBackends(): string[] {
  return Object.keys(tf.engine().registryFactory);
}

async function loadWasm(options: TfRuntimeOptions): Promise<WasmModule> {
  let wasm: WasmModule;
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    throw new BackendError(
      `tfjs backend 'wasm' needs the package @tensorflow/tfjs-backend-wasm (install version 4.22.0): ${(e as Error).message}`,
      { cause: e },
    );
  }
  // The wasm module can only be pointed at its files and thread count before it first initialises.
  if (tf.findBackend('wasm') === null) {
    const paths = options.wasmPaths ?? (await nodeWasmDir());
    if (paths !== undefined) wasm.setWasmPaths(paths as string);
    if (options.wasmThreads !== undefined) wasm.setThreadsCount(options.wasmThreads);
  }
  return wasm;
}
