/**
 * Runs in headless Chromium: a DoRA Linear forward (weightNorm + matmuls + doraCompose) on navigator.gpu
 * through the bundled backend. Inputs arrive in `window.__input`; the page sets `window.__result`.
 */
import type { TensorInfo } from '@dorajs/core';
import { createWebGpuBackend, type GpuTensor } from '../../src/index.js';
import { doraLinear } from '../helpers/dora-linear.js';

interface PageInput {
  readonly shapes: Record<string, number[]>;
  readonly values: Record<string, number[]>;
  readonly scale: number;
}

interface PageResult {
  readonly ok: boolean;
  readonly adapter?: string;
  readonly y?: number[];
  readonly error?: string;
  readonly gpuErrors: string[];
}

// The package compiles without DOM typings; the page reaches the browser globals through globalThis.
const w = globalThis as unknown as { __input: PageInput; __result?: PageResult; navigator: { gpu?: GPU } };

async function main(): Promise<PageResult> {
  if (!w.navigator.gpu) return { ok: false, error: 'navigator.gpu is undefined (secure context? --enable-unsafe-webgpu?)', gpuErrors: [] };
  const gpuErrors: string[] = [];
  const be = await createWebGpuBackend();
  be.device.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
  const { shapes, values, scale } = w.__input;
  const up = (name: string): TensorInfo<GpuTensor> => ({
    data: be.upload(Float32Array.from(values[name]!), shapes[name]!, 'float32'),
    shape: shapes[name]!,
    dtype: 'float32',
  });
  const temps: GpuTensor[] = [];
  const y = doraLinear(be, up('x'), { w: up('w'), a: up('a'), b: up('b'), m: up('m'), bias: up('bias'), scale }, temps);
  const out = Array.from((await be.download(y)) as Float32Array);
  const adapter = be.description;
  be.dispose();
  return { ok: true, adapter, y: out, gpuErrors };
}

main()
  .then((r) => (w.__result = r))
  .catch((e: unknown) => (w.__result = { ok: false, error: String((e as Error)?.stack ?? e), gpuErrors: [] }));
