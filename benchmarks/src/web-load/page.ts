/**
 * The page of the web-load suite (bundled by it with esbuild for the browser): `__init(backend)` creates the CPU
 * backend (wasm kernels: the page is cross-origin isolated) or WebGPU — before the suite takes its baseline, so
 * compiling wasm or starting a device is not counted —, then `__load(url)` loads the model at `url` with
 * `loadModel` (weights kept 2 bytes wide), runs one forward over four tokens so the weights are really there,
 * and reports what the backend holds.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createWebGpuBackend } from '@dorajs/backend-webgpu';
import { type Backend, noGrad, tensor, tidy } from '@dorajs/core';
import { loadModel } from '@dorajs/models';

interface LoadReport {
  readonly ms: number;
  readonly tensors: number;
  readonly backendBytes: number | null;
  readonly finite: boolean;
}

let backend: Backend | null = null;

async function init(which: 'cpu' | 'webgpu'): Promise<string> {
  backend = which === 'cpu' ? createCpuBackend({ kernels: 'wasm' }) : await createWebGpuBackend();
  return backend.name;
}

async function load(url: string): Promise<LoadReport> {
  const be = backend;
  if (!be) throw new Error('call __init first');
  const start = performance.now();
  let tensors = 0;
  const { model } = await loadModel(url, { backend: be, keepWidth: true, onProgress: (p) => void (tensors = p.loadedTensors) });
  const ms = performance.now() - start;
  const logits = tidy(() => noGrad(() => model.forward(tensor(new Int32Array([1, 5, 9, 3]), [1, 4], { dtype: 'int32', backend: be }))));
  const values = (await logits.data()) as Float32Array;
  logits.dispose();
  const backendBytes = be.memory?.().usedBytes ?? null;
  model.dispose();
  return { ms, tensors, backendBytes, finite: values.every(Number.isFinite) };
}

Object.assign(globalThis, { __init: init, __load: load });
(globalThis as { __ready?: boolean }).__ready = true;
