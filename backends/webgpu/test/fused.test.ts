/** Fused DoRA kernels: weightNorm in every layout (without an out·in buffer) and doraCompose. */
import { afterAll, describe, expect, it } from 'vitest';
import { f32ToBf16, bf16ToF32, type DType, type TensorInfo } from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { randn } from './helpers/reference.js';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

type Info = TensorInfo<GpuTensor>;
function up(values: Float32Array | Uint16Array, shape: number[], dtype: DType = 'float32'): Info {
  return { data: be.upload(values, shape, dtype), shape, dtype };
}

describe.skipIf(!backend)(`webgpu fused kernels${skipReason ? ` (${skipReason})` : ''}`, () => {
  it.each([
    // [out, in, r, transposeW]
    [64, 128, 4, false],
    [70, 45, 16, false],
    [33, 200, 20, false],
    [128, 96, 8, true],
    [21, 130, 5, true],
    [40, 72, 33, true],
  ] as const)('weightNorm out=%i in=%i r=%i transposeW=%s, never allocating out·in floats', async (out, inn, r, transposeW) => {
    const w = randn(out * inn, 1);
    const a = randn(r * inn, 2, 0.3);
    const b = randn(out * r, 3, 0.3);
    const scale = 1.7;
    const wShape = transposeW ? [inn, out] : [out, inn];
    const W = up(w, wShape);
    const A = up(a, [r, inn]);
    const B = up(b, [out, r]);
    be.resetLargestRequest();
    const n = be.weightNorm(W, A, B, scale, { transposeW });
    expect(be.stats().largestRequest).toBeLessThan(out * inn * 4);
    const got = await be.download({ data: n, shape: [out], dtype: 'float32' });
    expect(relativeError(got as Float32Array, weightNormHost(w, a, b, out, inn, r, scale, transposeW))).toBeLessThan(1e-5);
    for (const t of [W, A, B]) be.release(t.data);
    be.release(n);
  });

  it('weightNorm takes Conv2d weights [out, in, kh, kw] as [out, in·kh·kw]', async () => {
    const [o, c, kh, kw, r] = [6, 3, 3, 3, 4];
    const inn = c * kh * kw;
    const w = randn(o * inn, 4);
    const a = randn(r * inn, 5, 0.5);
    const b = randn(o * r, 6, 0.5);
    const n = be.weightNorm(up(w, [o, c, kh, kw]), up(a, [r, c, kh, kw]), up(b, [o, r, 1, 1]), 2, {});
    const got = await be.download({ data: n, shape: [o], dtype: 'float32' });
    expect(relativeError(got as Float32Array, weightNormHost(w, a, b, o, inn, r, 2, false))).toBeLessThan(1e-5);
  });

  it('weightNorm reads bf16-stored W (half the bytes) exactly like float32 W holding the same values', async () => {
    const [out, inn, r] = [48, 64, 8];
    const bits = Uint16Array.from(randn(out * inn, 7), (v) => f32ToBf16(v));
    const rounded = Float32Array.from(bits, bf16ToF32);
    const a = up(randn(r * inn, 8, 0.2), [r, inn]);
    const b = up(randn(out * r, 9, 0.2), [out, r]);
    for (const transposeW of [false, true]) {
      const shape = transposeW ? [inn, out] : [out, inn];
      const wBf = up(bits, shape, 'bfloat16');
      const wF = up(rounded, shape);
      expect(wBf.data.buf.size * 2).toBe(wF.data.buf.size);
      const nb = await be.download({ data: be.weightNorm(wBf, a, b, 0.5, { transposeW }), shape: [out], dtype: 'float32' });
      const nf = await be.download({ data: be.weightNorm(wF, a, b, 0.5, { transposeW }), shape: [out], dtype: 'float32' });
      expect(relativeError(nb as Float32Array, nf as Float32Array)).toBeLessThan(1e-6);
    }
  });

  it('doraCompose = bias + g ⊙ (base + s·lora), with and without bias', async () => {
    const [rows, cols] = [7, 12];
    const base = randn(rows * cols, 10);
    const lora = randn(rows * cols, 11);
    const g = randn(cols, 12);
    const bias = randn(cols, 13);
    const s = 0.75;
    const want = (withBias: boolean) => Array.from(base, (v, i) => (withBias ? bias[i % cols]! : 0) + g[i % cols]! * (v + s * lora[i]!));
    const args = [up(base, [rows, cols]), up(lora, [rows, cols]), up(g, [cols]), s] as const;
    const y1 = await be.download({ data: be.doraCompose(...args, up(bias, [cols])), shape: [rows, cols], dtype: 'float32' });
    const y0 = await be.download({ data: be.doraCompose(...args, null), shape: [rows, cols], dtype: 'float32' });
    expect(relativeError(y1 as Float32Array, want(true))).toBeLessThan(1e-6);
    expect(relativeError(y0 as Float32Array, want(false))).toBeLessThan(1e-6);
  });
});
