/**
 * The wasm elementwise kernels and reductions against the typed-array reference: bit for bit where both
 * round once per element, on broadcasts of every stride pattern, long rows that are cut for tasks, special
 * values, and reductions over leading, middle and trailing axes.
 */
import type { BinaryOp, ReduceOp, UnaryOp } from '@dorajs/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createCpuBackend, type CpuBackend } from '../src/index.js';
import { erf, gelu } from '../src/kernels/scalar-math.js';
import { BINARY_OPS, UNARY_OPS } from '../src/wasm/elementwise-wasm.js';
import { WasmKernels } from '../src/wasm/kernels.js';
import { expectSame, seeded } from './helpers.js';

const js = createCpuBackend({ kernels: 'js' });
const wasm = [createCpuBackend({ kernels: 'wasm', threads: 1 }), createCpuBackend({ kernels: 'wasm', threads: 2, splitThreshold: 0 })];
afterAll(() => wasm.forEach((b) => b.dispose()));

const SPECIAL = [
  0,
  -0,
  1,
  -1,
  0.5,
  3,
  NaN,
  Infinity,
  -Infinity,
  1e-30,
  -1e30,
  2.5e-39,
  88.7,
  88.73,
  -87.4,
  -103,
  -104,
  20,
  -20,
  0.34657359,
];
const APPROXIMATE = new Set<string>(['exp', 'sigmoid', 'silu', 'tanh', 'geluTanh', 'log', 'erf', 'gelu']);

function values(n: number, seed: number): Float32Array {
  const v = seeded(n, seed);
  for (let i = 0; i < n; i += 7) v[i] = SPECIAL[(i / 7) % SPECIAL.length]!;
  return v;
}

async function both(
  f: (be: CpuBackend, up: (v: Float32Array, s: number[]) => { data: never; shape: number[]; dtype: 'float32' }) => unknown,
  shape: number[],
): Promise<[Float32Array, Float32Array][]> {
  const results: [Float32Array, Float32Array][] = [];
  const runOn = async (be: CpuBackend) => {
    const owned: unknown[] = [];
    const up = (v: Float32Array, s: number[]) => {
      const data = be.upload(v, s, 'float32');
      owned.push(data);
      return { data: data as never, shape: s, dtype: 'float32' as const };
    };
    const h = f(be, up);
    const out = (await be.download({ data: h as never, shape, dtype: 'float32' })) as Float32Array;
    be.release(h as never);
    for (const o of owned) be.release(o as never);
    expect(be.liveBuffers()).toBe(0);
    return out;
  };
  const want = await runOn(js);
  for (const be of wasm) results.push([await runOn(be), want]);
  return results;
}

/** One unary op on the first wasm backend: its output for `values`, nothing left allocated. */
async function wasmUnary(op: UnaryOp, values: Float32Array): Promise<Float32Array> {
  const be = wasm[0]!;
  const input = be.upload(values, [values.length], 'float32');
  const h = be.unary(op, { data: input, shape: [values.length], dtype: 'float32' });
  try {
    return (await be.download({ data: h, shape: [values.length], dtype: 'float32' })) as Float32Array;
  } finally {
    be.release(input);
    be.release(h);
  }
}

describe('wasm elementwise kernels', () => {
  const shapes: [number[], number[], number[]][] = [
    [[37], [37], [37]],
    [[5, 9], [9], [5, 9]], // b broadcast along rows (stride 1), a full
    [
      [5, 1],
      [1, 9],
      [5, 9],
    ], // both broadcast: strides 0/1 per input
    [[1], [6, 7], [6, 7]], // scalar a
    [
      [3, 4, 1],
      [3, 1, 1],
      [3, 4, 1],
    ], // rows of length 1
    [[40000], [40000], [40000]], // one long row, cut into task rows
    [[40000], [1], [40000]],
  ];
  for (const op of BINARY_OPS) {
    it(`${op}: identical to the reference over broadcasts`, async () => {
      const spy = vi.spyOn(WasmKernels.prototype, 'binary');
      for (const [as, bs, os] of shapes) {
        const n = (s: number[]) => s.reduce((p, d) => p * d, 1);
        for (const [got, want] of await both(
          (be, up) => be.binary(op as BinaryOp, up(values(n(as), 1), as), up(values(n(bs), 2), bs), os),
          os,
        ))
          expectSame(got, want);
      }
      expect(spy).toHaveBeenCalled();
      spy.mockRestore();
    });
  }

  for (const op of UNARY_OPS) {
    it(`${op}: the reference's values on special and random inputs`, async () => {
      for (const n of [1, 7, 4096 + 3]) {
        for (const [got, want] of await both((be, up) => be.unary(op as UnaryOp, up(values(n, 3), [n])), [n])) {
          if (!APPROXIMATE.has(op)) {
            expectSame(got, want);
            continue;
          }
          // Float32 polynomials: within 3 ulp (gelu 10, see below), exact at NaN/±∞/0.
          const ulps = op === 'gelu' ? 10 : 3;
          for (let i = 0; i < n; i++) {
            const [g, w] = [got[i]!, want[i]!];
            if (!Number.isFinite(w) || w === 0) expect(g).toBe(w);
            else expect(Math.abs(g - w)).toBeLessThanOrEqual(ulps * 2 ** -23 * Math.abs(w) + 2 ** -140);
          }
        }
      }
    });
  }

  it('exp is within 3 ulp of the correctly rounded value over its whole range, subnormals included', async () => {
    const n = 40_001;
    const x = Float32Array.from({ length: n }, (_, i) => -104 + (193 * i) / (n - 1));
    const got = await wasmUnary('exp', x);
    for (let i = 0; i < n; i++) {
      const want = Math.fround(Math.exp(x[i]!));
      if (want === Infinity || want === 0) expect(got[i]).toBe(want);
      else expect(Math.abs(got[i]! - want)).toBeLessThanOrEqual(3 * 2 ** -23 * want + 2 ** -147);
    }
  });

  it('log is within 2 ulp from the smallest subnormal to the largest float, and exact at 0, 1, ±∞, negatives and NaN', async () => {
    const n = 60_001;
    // Logarithmically spaced over all positive floats, plus a dense run around 1 (where ln x → 0).
    const x = Float32Array.from({ length: n }, (_, i) =>
      i < 40_000 ? 2 ** (-149 + (276.99 * i) / 39_999) : 0.5 + (1.5 * (i - 40_000)) / 20_000,
    );
    const specials = Float32Array.from([0, -0, 1, Infinity, -Infinity, -1, -1e-30, Number.NaN]);
    const got = await wasmUnary('log', x);
    const gotSpecial = await wasmUnary('log', specials);
    for (let i = 0; i < n; i++) {
      const want = Math.fround(Math.log(x[i]!));
      expect(Math.abs(got[i]! - want)).toBeLessThanOrEqual(2 * 2 ** -23 * Math.abs(want) + 2 ** -149);
    }
    for (let i = 0; i < specials.length; i++) expect(gotSpecial[i]).toBe(Math.fround(Math.log(specials[i]!)));
  });

  it('erf is within 2 ulp and gelu (erf form) within 10 ulp of the float64 reference, tails and specials included', async () => {
    const n = 40_001;
    const x = Float32Array.from({ length: n }, (_, i) => -16 + (36 * i) / (n - 1));
    const specials = Float32Array.from([0, -0, Infinity, -Infinity, Number.NaN, 1, -1]);
    const ulp = 2 ** -23;
    for (const [op, reference, ulps] of [
      ['erf', erf, 2],
      ['gelu', gelu, 10],
    ] as const) {
      const got = await wasmUnary(op, x);
      // gelu's ulps: near x = −√2 (erfc = 1 − erf just below 1) erf's error is amplified ≈ 5×.
      for (let i = 0; i < n; i++) {
        const want = Math.fround(reference(x[i]!));
        expect(Math.abs(got[i]! - want)).toBeLessThanOrEqual(ulps * ulp * Math.abs(want) + 2 ** -140);
      }
      const special = await wasmUnary(op, specials);
      for (let i = 0; i < specials.length; i++) {
        const want = Math.fround(reference(specials[i]!));
        if (Number.isFinite(want) && Math.abs(want) < 1) expect(Math.abs(special[i]! - want)).toBeLessThanOrEqual(ulps * ulp);
        else expect(special[i]).toBe(want);
      }
    }
  });

  it('tanh is within 2 ulp over its whole range; geluTanh within 3 ulp plus the float32 rounding of u amplified by e^2u', async () => {
    const n = 40_001;
    const x = Float32Array.from({ length: n }, (_, i) => -12 + (24 * i) / (n - 1));
    const [gotTanh, gotGelu] = [await wasmUnary('tanh', x), await wasmUnary('geluTanh', x)];
    const ulp = 2 ** -23;
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const wantTanh = Math.fround(Math.tanh(v));
      expect(Math.abs(gotTanh[i]! - wantTanh)).toBeLessThanOrEqual(2 * ulp * Math.abs(wantTanh));
      const u = Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v);
      const wantGelu = Math.fround(v / (1 + Math.exp(-2 * u)));
      // u is rounded to float32 before e^−2|u|, a relative error of ≈ 2|u| ulp where the output is tiny.
      const bound = (3 + 2 * Math.max(0, -2 * u)) * ulp * Math.abs(wantGelu) + 2 ** -140;
      expect(Math.abs(gotGelu[i]! - wantGelu)).toBeLessThanOrEqual(bound);
    }
  });

  it('affine and doraCompose round once, in float64, as the reference does', async () => {
    for (const n of [5, 1027]) {
      for (const [got, want] of await both((be, up) => be.affine(up(values(n, 4), [n]), 1 / 3, 0.1), [n])) expectSame(got, want);
    }
    for (const [rows, cols, bias] of [
      [3, 8, true],
      [5, 7, false],
      [300, 64, true],
    ] as const) {
      for (const [got, want] of await both(
        (be, up) =>
          be.doraCompose(
            up(seeded(rows * cols, 5), [rows, cols]),
            up(seeded(rows * cols, 6), [rows, cols]),
            up(seeded(cols, 7), [cols]),
            0.7,
            bias ? up(seeded(cols, 8), [cols]) : null,
          ),
        [rows, cols],
      ))
        expectSame(got, want);
    }
  });
});

describe('wasm reductions', () => {
  const cases: [number[], number[]][] = [
    [[1000], [0]],
    [[6, 37], [1]],
    [[6, 37], [0]],
    [[4, 5, 6], [1]],
    [
      [4, 5, 6],
      [0, 1],
    ],
    [
      [4, 5, 6],
      [1, 2],
    ],
    [[3, 70000], [1]],
  ];
  for (const op of ['sum', 'mean', 'max', 'min'] as ReduceOp[]) {
    it(`${op} over one run of axes`, async () => {
      for (const [shape, axes] of cases) {
        const n = shape.reduce((p, d) => p * d, 1);
        const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const v = op === 'sum' || op === 'mean' ? seeded(n, 9) : values(n, 9);
        for (const [got, want] of await both((be, up) => be.reduce(op, up(v, shape), axes, kept), kept)) {
          // Sums are float64 in both, in different orders: equal after rounding to float32 but for a rare tie.
          if (op === 'sum' || op === 'mean')
            for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(want[i]!) + 1e-7);
          else expectSame(got, want);
        }
      }
    });
  }
});

describe('wasm softmax and log-softmax', () => {
  for (const log of [false, true]) {
    it(`${log ? 'log-softmax' : 'softmax'} matches the reference on long and short rows, ±1000 logits, −∞ masks and NaN/±∞ rows`, async () => {
      const spy = vi.spyOn(WasmKernels.prototype, 'softmax');
      for (const n of [1, 3, 4, 17, 1000, 5003]) {
        const rows = 6;
        const v = seeded(rows * n, n);
        for (let i = 0; i < n; i++) {
          v[n + i] = i % 2 ? 1000 : -1000; // row 1: huge logits
          if (i % 3 === 0) v[2 * n + i] = -Infinity; // row 2: masked entries
          v[3 * n + i] = -Infinity; // row 3: all masked → NaN
        }
        v[4 * n] = NaN; // row 4: NaN → NaN
        v[5 * n + n - 1] = Infinity; // row 5: +∞ → NaN
        for (const [got, want] of await both((be, up) => be.softmax(up(v, [rows, n]), log), [rows, n])) {
          for (let i = 0; i < got.length; i++) {
            if (Number.isNaN(want[i]!)) expect(got[i]).toBeNaN();
            else if (!Number.isFinite(want[i]!)) expect(got[i]).toBe(want[i]);
            else expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual((log ? 3e-7 : 1e-6) * Math.abs(want[i]!) + (log ? 3e-7 : 1e-30));
          }
        }
      }
      expect(spy).toHaveBeenCalled();
      spy.mockRestore();
    });
  }
});
