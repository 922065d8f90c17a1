/**
 * conv2d's im2col and col2im in wasm against the typed-array versions, bit for bit, over geometries that
 * reach every branch: strides 1–3 (the vector copy only at stride 1), padding wider than the kernel (whole
 * rows and columns outside the image), dilation, widths that are not a multiple of 4, a group's offset into
 * x — on one thread and split across two (im2col by rows, col2im by channels).
 */
import type { Conv2dParams } from '@dorajs/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createCpuBackend, type CpuBackend } from '../src/index.js';
import { col2im, conv2dForward, convGeometry, im2col, type ConvGeometry } from '../src/kernels/conv2d.js';
import { WasmKernels } from '../src/wasm/kernels.js';
import { expectSame, seeded } from './helpers.js';

/** [channels, h, w, kh, kw, sh, sw, ph, pw, dh, dw] */
const GEOMETRIES: number[][] = [
  [3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1],
  [2, 5, 5, 3, 3, 2, 2, 0, 0, 1, 1],
  [4, 10, 13, 5, 3, 1, 3, 2, 1, 1, 2],
  [1, 4, 4, 3, 3, 1, 1, 3, 3, 1, 1],
  [2, 6, 17, 2, 4, 2, 1, 1, 2, 2, 1],
  [3, 8, 8, 1, 1, 2, 2, 0, 0, 1, 1],
  [5, 12, 12, 3, 3, 1, 1, 1, 1, 2, 2],
  [2, 3, 30, 1, 7, 1, 1, 0, 3, 1, 1],
];

function geometryOf([c, h, w, kh, kw, sh, sw, ph, pw, dh, dw]: number[], groups: number): ConvGeometry {
  const p: Conv2dParams = { stride: [sh!, sw!], padding: [ph!, pw!], dilation: [dh!, dw!], groups };
  return convGeometry('test', [2, c! * groups, h!, w!], [groups, c!, kh!, kw!], p, null);
}

const kernelsOf = (be: CpuBackend): WasmKernels => (be as unknown as { wasm: WasmKernels }).wasm;

describe('wasm im2col / col2im', () => {
  const one = createCpuBackend({ kernels: 'wasm', threads: 1 });
  const two = createCpuBackend({ kernels: 'wasm', threads: 2, splitThreshold: 0 });
  afterAll(() => {
    one.dispose();
    two.dispose();
  });

  /** A heap tensor's float32 view and byte address. */
  function onHeap(be: CpuBackend, values: Float32Array): { view: Float32Array; ptr: number; release: () => void } {
    const data = be.upload(values, [values.length], 'float32');
    return { view: data.values as Float32Array, ptr: data.ptr, release: () => be.release(data) };
  }

  for (const [label, be] of [
    ['1 thread', one],
    ['2 threads', two],
  ] as const) {
    for (const [gi, shape] of GEOMETRIES.entries()) {
      for (const groups of [1, 2]) {
        it(`${label}, geometry ${gi} (${shape.join(' ')}), group ${groups}/${groups}: im2col and col2im match the typed arrays`, async () => {
          await two.ready();
          const g = geometryOf(shape, groups);
          const rows = g.cg * g.kh * g.kw;
          const spatial = g.oh * g.ow;
          // The last group's planes: a nonzero offset into x when there are two.
          const xOffset = (g.c - g.cg) * g.h * g.w;
          const xValues = seeded(g.c * g.h * g.w, 10 + gi);

          const owned: { release: () => void }[] = [];
          const heap = (values: Float32Array) => {
            const t = onHeap(be, values);
            owned.push(t);
            return t;
          };
          try {
            const x = heap(xValues);
            const cols = heap(new Float32Array(rows * spatial).fill(Number.NaN));
            kernelsOf(be).im2col(x.ptr + xOffset * 4, cols.ptr, g);
            const want = new Float32Array(rows * spatial);
            im2col(xValues, xOffset, g, want);
            expectSame(cols.view, want);

            const colValues = seeded(rows * spatial, 20 + gi);
            const dxStart = seeded(g.c * g.h * g.w, 30 + gi);
            const c2 = heap(colValues);
            const dx = heap(dxStart);
            kernelsOf(be).col2im(c2.ptr, dx.ptr + xOffset * 4, g);
            const wantDx = dxStart.slice();
            col2im(colValues, g, wantDx, xOffset);
            expectSame(dx.view, wantDx);
          } finally {
            for (const t of owned) t.release();
          }
          expect(be.liveBuffers()).toBe(0);
        });
      }
    }
  }

  it('the conv kernels use them on the wasm backend', () => {
    const im = vi.spyOn(WasmKernels.prototype, 'im2col');
    const g = geometryOf(GEOMETRIES[0]!, 1);
    const x = one.upload(seeded(g.n * g.c * g.h * g.w, 1), [g.n, g.c, g.h, g.w], 'float32');
    const w = one.upload(seeded(g.o * g.cg * g.kh * g.kw, 2), [g.o, g.cg, g.kh, g.kw], 'float32');
    const y = one.conv2d(
      { data: x, shape: [g.n, g.c, g.h, g.w], dtype: 'float32' },
      { data: w, shape: [g.o, g.cg, g.kh, g.kw], dtype: 'float32' },
      g.p,
      [g.n, g.o, g.oh, g.ow],
    );
    expect(im).toHaveBeenCalledTimes(g.n);
    im.mockRestore();
    // And the result is the typed-array conv's.
    const want = new Float32Array(g.n * g.o * g.oh * g.ow);
    conv2dForward(seeded(g.n * g.c * g.h * g.w, 1), seeded(g.o * g.cg * g.kh * g.kw, 2), g, want);
    const got = y.values as Float32Array;
    const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-5 * scale);
    for (const d of [x, w, y]) one.release(d);
  });
});
