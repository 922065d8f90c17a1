/**
 * The wasm GEMM/GEMV through the backend, on sizes that cross every block edge of the kernel (MR 4, NR 8,
 * KC 256, MC 128, NC 1024) and the GEMV paths, for every transpose flag, against a float64 reference.
 */
import { broadcastShapes } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';
import { kernelModuleBytes } from '../src/wasm/kernel-module.js';
import { wasmApi } from '../src/wasm/wasm-api.js';
import { seeded } from './helpers.js';

const backends = [createCpuBackend({ kernels: 'wasm', fma: false })];

function reference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  ta: boolean,
  tb: boolean,
): { value: Float64Array; magnitude: Float64Array } {
  const value = new Float64Array(m * n);
  const magnitude = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        const t = a[ta ? p * m + i : i * k + p]! * b[tb ? j * k + p : p * n + j]!;
        s += t;
        mag += Math.abs(t);
      }
      value[i * n + j] = s;
      magnitude[i * n + j] = mag;
    }
  }
  return { value, magnitude };
}

describe('wasm modules', () => {
  it('validate in every variant (FMA or not, shared memory or not)', () => {
    for (const fma of [false, true]) {
      for (const shared of [false, true]) {
        const bytes = kernelModuleBytes(fma, shared);
        // Without relaxed SIMD in the engine the FMA variant cannot validate; the others must.
        if (!fma) expect(wasmApi!.validate(bytes)).toBe(true);
      }
    }
  });
});

describe('wasm matmul', () => {
  const cases: [number, number, number][] = [
    [1, 37, 300], // GEMV over rows
    [29, 1, 300], // GEMV over columns
    [1, 5, 3], // tiny GEMV, k and n below a vector
    [5, 7, 3], // one edge tile
    [130, 9, 261], // two M blocks (MC 128), two K blocks, edge tiles both ways
    [6, 1030, 40], // two N blocks (NC 1024)
    [67, 65, 513], // three K blocks, odd edges
    [8, 16, 4], // whole tiles only
  ];
  for (const be of backends) {
    for (const [m, n, k] of cases) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          it(`${m}×${k} · ${k}×${n}${ta ? ' (Aᵀ)' : ''}${tb ? ' (Bᵀ)' : ''}`, async () => {
            const av = seeded(m * k, 3 + m);
            const bv = seeded(k * n, 7 + n);
            const a = { data: be.upload(av, ta ? [k, m] : [m, k], 'float32'), shape: ta ? [k, m] : [m, k], dtype: 'float32' as const };
            const b = { data: be.upload(bv, tb ? [n, k] : [k, n], 'float32'), shape: tb ? [n, k] : [k, n], dtype: 'float32' as const };
            const out = be.matmul(a, b, { transposeA: ta, transposeB: tb }, [m, n]);
            const got = await be.download({ data: out, shape: [m, n], dtype: 'float32' });
            const { value, magnitude } = reference(av, bv, m, n, k, ta, tb);
            for (let i = 0; i < m * n; i++) expect(Math.abs(got[i]! - value[i]!)).toBeLessThanOrEqual(1e-6 * magnitude[i]! + 1e-7);
            for (const h of [a.data, b.data, out]) be.release(h);
            expect(be.liveBuffers()).toBe(0);
          });
        }
      }
    }
  }

  it('batches with broadcasting, batched GEMV, and the tall-matrix path', async () => {
    const be = backends[0]!;
    for (const [aShape, bShape, tb] of [
      [[2, 1, 3, 20], [3, 20, 9], false],
      [[4, 1, 20], [4, 20, 9], false],
      [[4, 1, 20], [4, 9, 20], true],
      [[2, 5, 20], [20, 1], false],
      [[3, 6, 20], [20, 10], false],
    ] as [number[], number[], boolean][]) {
      const av = seeded(
        aShape.reduce((x, y) => x * y),
        1,
      );
      const bv = seeded(
        bShape.reduce((x, y) => x * y),
        2,
      );
      const m = aShape.at(-2)!;
      const n = tb ? bShape.at(-2)! : bShape.at(-1)!;
      const outShape = [...broadcastShapes(aShape.slice(0, -2), bShape.slice(0, -2), 'test'), m, n];
      const a = { data: be.upload(av, aShape, 'float32'), shape: aShape, dtype: 'float32' as const };
      const b = { data: be.upload(bv, bShape, 'float32'), shape: bShape, dtype: 'float32' as const };
      const js = createCpuBackend({ kernels: 'js' });
      const ja = { data: js.upload(av, aShape, 'float32'), shape: aShape, dtype: 'float32' as const };
      const jb = { data: js.upload(bv, bShape, 'float32'), shape: bShape, dtype: 'float32' as const };
      const got = await be.download({ data: be.matmul(a, b, { transposeB: tb }, outShape), shape: outShape, dtype: 'float32' });
      const want = await js.download({ data: js.matmul(ja, jb, { transposeB: tb }, outShape), shape: outShape, dtype: 'float32' });
      expect(got.length).toBe(want.length);
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
    }
  });

  it('propagates NaN through zeros on every path', async () => {
    const be = backends[0]!;
    for (const [m, n, k] of [
      [1, 5, 8],
      [5, 1, 8],
      [3, 3, 3],
      [40, 40, 40],
    ] as const) {
      const bv = new Float32Array(k * n);
      bv[0] = NaN;
      const a = { data: be.upload(new Float32Array(m * k), [m, k], 'float32'), shape: [m, k], dtype: 'float32' as const };
      const b = { data: be.upload(bv, [k, n], 'float32'), shape: [k, n], dtype: 'float32' as const };
      const got = await be.download({ data: be.matmul(a, b, {}, [m, n]), shape: [m, n], dtype: 'float32' });
      expect(got[0]).toBeNaN();
      if (n > 1) expect(got[1]).toBe(0);
    }
  });
});
