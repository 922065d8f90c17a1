/**
 * The wasm weight norm against the float64 definition, on shapes that cross its tile edges (4-row U panels,
 * 8-column V panels, 256-column and 64-row float32 chunks) in both layouts, and on rows whose float32 squares
 * overflow or underflow (the host redoes those in float64).
 */
import { describe, expect, it } from 'vitest';
import { createCpuBackend, type CpuBackend } from '../src/index.js';
import { weightNormHost } from '@dorajs/backend-conformance';
import { seeded } from './helpers.js';

async function norms(
  be: CpuBackend,
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  out: number,
  inF: number,
  r: number,
  s: number,
  tw: boolean,
): Promise<Float32Array> {
  const t = (v: Float32Array, shape: number[]) => ({ data: be.upload(v, shape, 'float32'), shape, dtype: 'float32' as const });
  const ins = [t(w, tw ? [inF, out] : [out, inF]), t(a, [r, inF]), t(b, [out, r])] as const;
  const h = be.weightNorm(ins[0], ins[1], ins[2], s, { transposeW: tw });
  const got = (await be.download({ data: h, shape: [out], dtype: 'float32' })) as Float32Array;
  for (const x of ins) be.release(x.data);
  be.release(h);
  expect(be.liveBuffers()).toBe(0);
  return got;
}

const backends = [createCpuBackend({ kernels: 'wasm', fma: false })];

describe('wasm weightNorm', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [3, 7, 2], // fewer rows than a panel, fewer columns than a vector
    [5, 9, 0], // r = 0: ‖W‖
    [9, 263, 5], // row tail, column tail, past one 256-column chunk
    [66, 40, 3], // column layout: rows past one 64-row chunk
    [17, 520, 16],
  ];
  for (const be of backends) {
    for (const [out, inF, r] of shapes) {
      for (const tw of [false, true]) {
        it(`W ${tw ? `[in ${inF}, out ${out}]` : `[${out}, ${inF}]`}, r ${r}`, async () => {
          const w = seeded(out * inF, 1 + out);
          const a = seeded(r * inF, 2 + inF);
          const b = seeded(out * r, 3 + r);
          const got = await norms(be, w, a, b, out, inF, r, 0.75, tw);
          const want = weightNormHost(w, a, b, out, inF, r, 0.75, tw);
          for (let o = 0; o < out; o++) expect(Math.abs(got[o]! - want[o]!)).toBeLessThanOrEqual(2e-6 * want[o]!);
        });
      }
    }

    it('redoes rows whose float32 squares overflow or underflow, and keeps zero rows exactly 0', async () => {
      const [out, inF, r] = [6, 40, 2];
      for (const tw of [false, true]) {
        const w = seeded(out * inF, 9);
        const b = seeded(out * r, 8);
        const at = (o: number, i: number) => (tw ? i * out + o : o * inF + i);
        for (let i = 0; i < inF; i++) {
          w[at(0, i)] = 0;
          w[at(1, i)] = 3e19 * (i % 2 ? 1 : -1); // squares overflow float32
          w[at(2, i)] = 1e-25; // squares underflow float32
        }
        for (let k = 0; k < r; k++) {
          b[0 * r + k] = 0;
          b[1 * r + k] = 0;
          b[2 * r + k] = 0;
        }
        const a = seeded(r * inF, 7);
        const got = await norms(be, w, a, b, out, inF, r, 1, tw);
        const want = weightNormHost(w, a, b, out, inF, r, 1, tw);
        expect(got[0]).toBe(0);
        expect(Number.isFinite(got[1]!)).toBe(true);
        for (let o = 1; o < out; o++) expect(Math.abs(got[o]! - want[o]!)).toBeLessThanOrEqual(2e-6 * want[o]!);
      }
    });
  }
});
