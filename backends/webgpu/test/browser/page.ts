/**
 * Runs in headless Chromium: a DoRA Linear forward (weightNorm + matmuls + doraCompose) on navigator.gpu
 * through the bundled backend, and a decode step (T = 1) in PEFT's order, where the GEMV and the row-
 * streaming norm share one pass over W (with subgroup reductions where the adapter has `subgroups`, as
 * SwiftShader does). Inputs arrive in `window.__input`; the page sets `window.__result`.
 */
import type { TensorInfo } from '@dorajs/core';
import { createWebGpuBackend, type GpuTensor } from '../../src/index.js';
import { doraLinear, doraLinearFused } from '../helpers/dora-linear.js';

interface PageInput {
  readonly shapes: Record<string, number[]>;
  readonly values: Record<string, number[]>;
  readonly scale: number;
}

interface PageResult {
  readonly ok: boolean;
  readonly adapter?: string;
  readonly y?: number[];
  readonly yDecode?: number[];
  readonly fused?: number;
  readonly subgroups?: boolean;
  readonly adapterSubgroups?: boolean;
  readonly shaderF16?: boolean;
  readonly adapterShaderF16?: boolean;
  readonly error?: string;
  readonly gpuErrors: string[];
}

// The package compiles without DOM typings; the page reaches the browser globals through globalThis.
const w = globalThis as unknown as { __input: PageInput; __result?: PageResult; navigator: { gpu?: GPU } };

async function main(): Promise<PageResult> {
  if (!w.navigator.gpu) return { ok: false, error: 'navigator.gpu is undefined (secure context? --enable-unsafe-webgpu?)', gpuErrors: [] };
  const gpuErrors: string[] = [];
  const be = await createWebGpuBackend({ weightNormVariant: 'rows' });
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
  const weights = { w: up('w'), a: up('a'), b: up('b'), m: up('m'), bias: up('bias'), scale };
  const fused0 = be.stats().fused;
  const yDecode = Array.from((await be.download(doraLinearFused(be, up('x1'), weights, temps))) as Float32Array);
  const result = {
    ok: true,
    adapter: be.description,
    y: out,
    yDecode,
    fused: be.stats().fused - fused0,
    subgroups: be.usesSubgroups,
    adapterSubgroups: be.device.features.has('subgroups'),
    shaderF16: be.usesShaderF16,
    adapterShaderF16: be.device.features.has('shader-f16'),
    gpuErrors,
  };
  be.dispose();
  return result;
}

main()
  .then((r) => (w.__result = r))
  .catch((e: unknown) => (w.__result = { ok: false, error: String((e as Error)?.stack ?? e), gpuErrors: [] }));
