/**
 * The page of the web-load suite (bundled by it with esbuild for the browser): `__init(backend)` creates the CPU
 * backend (wasm kernels: the page is cross-origin isolated) or WebGPU — before the suite takes its baseline, so
 * compiling wasm or starting a device is not counted —, then `__load(url)` loads the model at `url` with
 * `loadModel` (weights kept 2 bytes wide) and waits for the backend to finish (`sync`: on WebGPU the queue has
 * executed every write, so the weights are in their buffers), and `__forward()` runs one forward over four tokens
 * so the weights are really there, disposes the model and reports how many storage buffers outlived it.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createWebGpuBackend } from '@dorajs/backend-webgpu';
import { type Backend, noGrad, tensor, tidy } from '@dorajs/core';
import { type CausalLM, loadModel } from '@dorajs/models';

interface LoadReport {
  readonly ms: number;
  readonly tensors: number;
  readonly backendBytes: number | null;
}

interface ForwardReport {
  readonly finite: boolean;
  /** Storage buffers alive after the model was disposed, beyond those alive before it was loaded. */
  readonly leaked: number;
}

let backend: Backend | null = null;
let model: CausalLM | null = null;
let liveBefore = 0;

async function init(which: 'cpu' | 'webgpu'): Promise<string> {
  backend = which === 'cpu' ? createCpuBackend({ kernels: 'wasm' }) : await createWebGpuBackend();
  return backend.name;
}

async function load(url: string): Promise<LoadReport> {
  const be = backend;
  if (!be) throw new Error('call __init first');
  liveBefore = be.liveBuffers();
  const start = performance.now();
  let tensors = 0;
  ({ model } = await loadModel(url, { backend: be, keepWidth: true, onProgress: (p) => void (tensors = p.loadedTensors) }));
  await be.sync();
  const ms = performance.now() - start;
  return { ms, tensors, backendBytes: be.memory?.().usedBytes ?? null };
}

async function forward(): Promise<ForwardReport> {
  const be = backend;
  const m = model;
  if (!be || !m) throw new Error('call __load first');
  const logits = tidy(() => noGrad(() => m.forward(tensor(new Int32Array([1, 5, 9, 3]), [1, 4], { dtype: 'int32', backend: be }))));
  const values = (await logits.data()) as Float32Array;
  logits.dispose();
  m.dispose();
  model = null;
  await be.sync();
  return { finite: values.every(Number.isFinite), leaked: be.liveBuffers() - liveBefore };
}

Object.assign(globalThis, { __init: init, __load: load, __forward: forward });
(globalThis as { __ready?: boolean }).__ready = true;
