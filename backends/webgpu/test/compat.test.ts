/**
 * A compatibility-mode device with its default limits (128 invocations per workgroup, where the fast matmul and
 * weight-norm programs use 256): every matmul program and the weight norm pick what the device allows.
 * Dawn's OpenGL ES backend on llvmpipe gives such a device; without it the file is skipped (or fails in CI).
 */
import { dequantizeHost, quantizeHost, type QuantizedInfo, type TensorInfo } from '@dorajs/core';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';
import { afterAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from '../src/index.js';
import { matmulRef, randn } from './helpers/reference.js';

/** Dawn's instance must outlive its devices (collected early, it takes the GL context with it). */
let dawn: GPU | null = null;

async function compatBackend(): Promise<{ backend: WebGpuBackend | null; reason: string }> {
  try {
    const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU };
    dawn = create(['backend=opengles']);
    const adapter = await dawn.requestAdapter({ featureLevel: 'compatibility' });
    if (!adapter) throw new Error('no compatibility adapter');
    const device = await adapter.requestDevice(); // default limits
    return { backend: await createWebGpuBackend({ device, destroyDevice: true }), reason: '' };
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    return { backend: null, reason: `no compatibility-mode WebGPU device, skipping: ${(e as Error).message}` };
  }
}

const { backend, reason } = await compatBackend();
const be = backend!;
afterAll(() => backend?.dispose());

type Info = TensorInfo<GpuTensor>;
const up = (values: Float32Array | Int8Array | Uint8Array, shape: number[], dtype: 'float32' | 'int8' | 'uint8' = 'float32'): Info => ({
  data: be.upload(values as Float32Array, shape, dtype),
  shape,
  dtype,
});
const down = async (data: GpuTensor, shape: readonly number[]) => (await be.download({ data, shape, dtype: 'float32' })) as Float32Array;

describe.skipIf(!backend)(`webgpu on a compatibility-mode device with default limits${reason ? ` (${reason})` : ''}`, () => {
  it('has fewer than 256 invocations per workgroup', () => {
    expect(be.device.limits.maxComputeInvocationsPerWorkgroup).toBeLessThan(256);
  });

  it.each([
    [64, 96, 80, false],
    [1, 96, 80, false],
    [1, 96, 80, true],
    [40, 16, 24, false],
    [3, 100, 7, true],
  ] as const)('matmul [%i, %i]·[%i] (transposeB %s)', async (M, K, N, transB) => {
    const a = randn(M * K, 1);
    const b = randn(K * N, 2);
    const bShape = transB ? [N, K] : [K, N];
    const y = be.matmul(up(a, [M, K]), up(b, bShape), { transposeB: transB }, [M, N]);
    expect(relativeError(await down(y, [M, N]), matmulRef(a, [M, K], b, bShape, false, transB).out)).toBeLessThan(1e-4);
  });

  it('nf4 W: x·Wᵀ at one and 40 tokens, and the weight norm in both layouts', async () => {
    const [rows, cols] = [48, 128];
    const host = quantizeHost(randn(rows * cols, 3), [rows, cols], { format: 'nf4', name: 'w' });
    const values = dequantizeHost(host);
    if (host.format === 'int8') throw new Error('nf4 expected');
    const q: QuantizedInfo<GpuTensor> = {
      format: 'nf4',
      shape: [rows, cols],
      data: up(host.data as Uint8Array, [rows, cols / 2], 'uint8'),
      scales: up(host.absmax as Float32Array, [host.absmax.length]),
      blocksize: host.blocksize,
    };
    for (const T of [1, 40]) {
      const x = randn(T * cols, 4);
      const y = be.matmulNarrow(up(x, [T, cols]), q, true, [T, rows]);
      expect(relativeError(await down(y, [T, rows]), matmulRef(x, [T, cols], values, [rows, cols], false, true).out)).toBeLessThan(1e-4);
    }
    for (const transposeW of [false, true]) {
      const r = 4;
      const [out, inn] = transposeW ? [cols, rows] : [rows, cols];
      const a = randn(r * inn, 5, 0.3);
      const b = randn(out * r, 6, 0.3);
      const n = be.weightNormNarrow(q, up(a, [r, inn]), up(b, [out, r]), 1.5, { transposeW });
      expect(relativeError(await down(n, [out]), weightNormHost(values, a, b, out, inn, r, 1.5, transposeW))).toBeLessThan(1e-4);
      const wf = up(values, [rows, cols]);
      const nd = be.weightNorm(wf, up(a, [r, inn]), up(b, [out, r]), 1.5, { transposeW });
      expect(relativeError(await down(nd, [out]), weightNormHost(values, a, b, out, inn, r, 1.5, transposeW))).toBeLessThan(1e-4);
    }
  });
});
