/**
 * PEFT's `linear` fixture (MLP 16→32→ReLU→8, DoRA r=4, alpha=8) through WebGPU kernels, and the same with
 * the base weights stored as bf16 (two per u32): equal to the float32 path on bf16-rounded weights.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32, f32ToBf16, parseSafetensors, type DType, type HostTensor, type TensorInfo } from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { doraLinear } from './helpers/dora-linear.js';
import { setupGpu } from './helpers/gpu.js';
import { relativeError } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

const caseDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'peft', 'linear');
const load = (file: string) => parseSafetensors(new Uint8Array(readFileSync(join(caseDir, file))), file).tensors;
const baseW = load('base/model.safetensors');
const tensors = load('tensors.safetensors');
const scale = 8 / 4;

function f32(map: ReadonlyMap<string, HostTensor>, key: string): { data: Float32Array; shape: number[] } {
  const t = map.get(key);
  if (!t || t.dtype !== 'F32') throw new Error(`fixture key ${key} missing or not F32`);
  return { data: t.data, shape: [...t.shape] };
}

type Info = TensorInfo<GpuTensor>;

function forward(weightDType: 'float32' | 'bfloat16', temps: GpuTensor[]): Info {
  const up = (values: Float32Array | Uint16Array, shape: number[], dtype: DType = 'float32'): Info => {
    const data = be.upload(values, shape, dtype);
    temps.push(data);
    return { data, shape, dtype };
  };
  const weight = (key: string): Info => {
    const { data, shape } = f32(baseW, key);
    if (weightDType === 'float32')
      return up(
        Float32Array.from(data, (v) => bf16ToF32(f32ToBf16(v))),
        shape,
      );
    return up(Uint16Array.from(data, f32ToBf16), shape, 'bfloat16');
  };
  const param = (layer: string, name: string) => {
    const { data, shape } = f32(tensors, `param.base_model.model.${layer}.${name}.default.weight`);
    return up(data, shape);
  };
  const layer = (name: string, bias: Info | null) => ({
    w: weight(`${name}.weight`),
    a: param(name, 'lora_A'),
    b: param(name, 'lora_B'),
    m: param(name, 'lora_magnitude_vector'),
    bias,
    scale,
  });
  const x = f32(tensors, 'input.x');
  const h = doraLinear(be, up(x.data, x.shape), layer('lin1', up(f32(baseW, 'lin1.bias').data, [32])), temps);
  const hr = be.unary('relu', h);
  temps.push(hr);
  return doraLinear(be, { data: hr, shape: h.shape, dtype: 'float32' }, layer('lin2', null), temps);
}

function forwardExact(temps: GpuTensor[]): Info {
  // float32 weights as stored (no bf16 rounding), for parity with PEFT itself.
  const up = (values: Float32Array, shape: number[]): Info => {
    const data = be.upload(values, shape, 'float32');
    temps.push(data);
    return { data, shape, dtype: 'float32' };
  };
  const t = (map: ReadonlyMap<string, HostTensor>, key: string) => {
    const { data, shape } = f32(map, key);
    return up(data, shape);
  };
  const layer = (name: string, bias: Info | null) => ({
    w: t(baseW, `${name}.weight`),
    a: t(tensors, `param.base_model.model.${name}.lora_A.default.weight`),
    b: t(tensors, `param.base_model.model.${name}.lora_B.default.weight`),
    m: t(tensors, `param.base_model.model.${name}.lora_magnitude_vector.default.weight`),
    bias,
    scale,
  });
  const h = doraLinear(be, t(tensors, 'input.x'), layer('lin1', t(baseW, 'lin1.bias')), temps);
  const hr = be.unary('relu', h);
  temps.push(hr);
  return doraLinear(be, { data: hr, shape: h.shape, dtype: 'float32' }, layer('lin2', null), temps);
}

describe.skipIf(!backend)(`webgpu on the PEFT 'linear' fixture${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('matches PEFT out.dora within 1e-4', async () => {
    const temps: GpuTensor[] = [];
    const y = await be.download(forwardExact(temps));
    expect(relativeError(y as Float32Array, f32(tensors, 'out.dora').data)).toBeLessThan(1e-4);
    for (const h of temps) be.release(h);
  });

  it('bf16-stored base weights equal the float32 path on bf16-rounded weights, in half the bytes', async () => {
    const tf: GpuTensor[] = [];
    const tb: GpuTensor[] = [];
    const yf = await be.download(forward('float32', tf));
    const yb = await be.download(forward('bfloat16', tb));
    expect(relativeError(yb as Float32Array, yf as Float32Array)).toBeLessThan(1e-4);
    // The base weights are the first upload of each layer in both runs: compare their storage.
    const weightBytes = (ts: GpuTensor[]) =>
      ts.filter((t) => t.size === 32 * 16 || t.size === 8 * 32).reduce((sum, t) => sum + t.buf.size, 0);
    expect(weightBytes(tb) * 2).toBe(weightBytes(tf));
    expect(tb.filter((t) => t.dtype === 'bfloat16')).toHaveLength(2);
    // and the bf16 result still agrees with PEFT to bf16 weight precision
    expect(relativeError(yb as Float32Array, f32(tensors, 'out.dora').data)).toBeLessThan(1e-2);
    for (const h of [...tf, ...tb]) be.release(h);
  });
});
