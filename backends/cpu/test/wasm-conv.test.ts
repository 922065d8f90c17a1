/** conv2d and both gradients run their GEMMs in wasm on heap views, and agree with the reference. */
import type { Conv2dParams } from '@dorajs/core';
import { describe, expect, it, vi } from 'vitest';
import { createCpuBackend, type CpuBackend } from '../src/index.js';
import { WasmKernels } from '../src/wasm/kernels.js';
import { seeded } from './helpers.js';

const js = createCpuBackend({ kernels: 'js' });
const wasm = createCpuBackend({ kernels: 'wasm' });

async function conv(
  be: CpuBackend,
  which: 'y' | 'dx' | 'dw',
  p: Conv2dParams,
  xs: number[],
  ws: number[],
  ys: number[],
): Promise<Float32Array> {
  const n = (s: number[]) => s.reduce((a, d) => a * d, 1);
  const t = (v: Float32Array, s: number[]) => ({ data: be.upload(v, s, 'float32'), shape: s, dtype: 'float32' as const });
  const x = t(seeded(n(xs), 1), xs);
  const w = t(seeded(n(ws), 2), ws);
  const dy = t(seeded(n(ys), 3), ys);
  const [h, shape] =
    which === 'y'
      ? [be.conv2d(x, w, p, ys), ys]
      : which === 'dx'
        ? [be.conv2dBackpropInput(dy, w, p, xs), xs]
        : [be.conv2dBackpropFilter(x, dy, p, ws), ws];
  const out = (await be.download({ data: h, shape, dtype: 'float32' })) as Float32Array;
  for (const d of [x.data, w.data, dy.data, h]) be.release(d);
  return out;
}

describe('wasm conv2d', () => {
  const geometries: [string, Conv2dParams, number[], number[], number[]][] = [
    [
      '3×3, stride 2, padding 1, 2 groups',
      { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 2 },
      [2, 8, 20, 20],
      [16, 4, 3, 3],
      [2, 16, 10, 10],
    ],
    ['3×3, dilation 2', { stride: [1, 1], padding: [0, 0], dilation: [2, 2], groups: 1 }, [1, 3, 12, 12], [5, 3, 3, 3], [1, 5, 8, 8]],
    [
      '1×1 pointwise (no im2col)',
      { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 },
      [2, 6, 9, 9],
      [10, 6, 1, 1],
      [2, 10, 9, 9],
    ],
  ];
  for (const [title, p, xs, ws, ys] of geometries) {
    for (const which of ['y', 'dx', 'dw'] as const) {
      it(`${title}: ${which}`, async () => {
        const spy = vi.spyOn(WasmKernels.prototype, 'gemmStrided');
        const got = await conv(wasm, which, p, xs, ws, ys);
        expect(spy).toHaveBeenCalled();
        spy.mockRestore();
        const want = await conv(js, which, p, xs, ws, ys);
        const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-5 * scale);
        expect(wasm.liveBuffers()).toBe(0);
      });
    }
  }
});
