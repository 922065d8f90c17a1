/**
 * The wasm narrow-weight kernels (src/wasm/narrow-wasm.ts) against the typed-array reference and float64, on
 * shapes that cross their edges: 4-bit GEMV with whole blocks per row and the panel path where blocks
 * straddle rows, decode ranges not on a 32-element boundary, bf16/f16/int8 tails, float16 specials
 * (subnormals, ±0, ±Inf, NaN), and the work split across two threads.
 */
import {
  bf16ToF32,
  dequantizeHost,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  ops,
  QuantizedWeight,
  type Tensor,
  tensor,
  type Weight,
} from '@dorajs/core';
import { afterAll, describe, expect, it } from 'vitest';
import { type CpuBackend, createCpuBackend } from '../src/index.js';
import { seeded } from './helpers.js';

const backends: CpuBackend[] = [];
const make = (o: Parameters<typeof createCpuBackend>[0]) => {
  const be = createCpuBackend(o);
  backends.push(be);
  return be;
};
const js = make({ kernels: 'js' });
const wasm = make({ kernels: 'wasm', fma: false });
const wasm2 = make({ kernels: 'wasm', threads: 2, splitThreshold: 64 });
afterAll(() => {
  for (const be of backends) be.dispose();
});

type Fmt = 'bfloat16' | 'float16' | 'nf4' | 'fp4' | 'int8' | 'nf4-double';

function weight(be: CpuBackend, fmt: Fmt, rows: number, cols: number, seed: number): { w: Weight; values: Float32Array } {
  const src = seeded(rows * cols, seed).map((v) => v * 0.2);
  if (src.length > 200) src.fill(0, 64, 128);
  if (fmt === 'bfloat16') {
    const bits = Uint16Array.from(src, f32ToBf16);
    return {
      w: tensor(bits, [rows, cols], { backend: be, dtype: 'bfloat16' }),
      values: Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!),
    };
  }
  if (fmt === 'float16') {
    // Every float16 pattern class: normals, subnormals, ±0, ±Inf, NaN.
    const bits = Uint16Array.from(src, (_, i) => (i * 7919 + seed) & 0xffff);
    return { w: tensor(bits, [rows, cols], { backend: be, dtype: 'float16' }), values: Float32Array.from(bits, f16ToF32) };
  }
  const q = QuantizedWeight.quantize(src, [rows, cols], be, {
    format: fmt === 'nf4-double' ? 'nf4' : fmt,
    doubleQuant: fmt === 'nf4-double',
    name: 'w',
  });
  return { w: q, values: new Float32Array(0) };
}

async function valuesOf(w: Weight, host: Float32Array): Promise<Float32Array> {
  return w instanceof QuantizedWeight ? dequantizeHost(await w.toHost()) : host;
}

/** Bit patterns (so −0 and 0 differ), with every NaN as one value (float16 NaN payloads are not specified). */
const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length), (b, i) => (Number.isNaN(a[i]) ? -1 : b));

describe('wasm narrow kernels', () => {
  const shapes: [number, number][] = [
    [13, 128], // 4-bit: two whole blocks per row (the fused GEMV)
    [9, 100], // 4-bit blocks straddle rows (panels), tails of 4 / 8 / 16
    [5, 7], // shorter than every vector step; an odd element count
  ];
  const formats: Fmt[] = ['bfloat16', 'float16', 'nf4', 'fp4', 'int8', 'nf4-double'];

  for (const fmt of formats) {
    for (const [rows, cols] of shapes) {
      it(`${fmt} [${rows}, ${cols}]: widening and row gathers are exact, on one and two threads`, async () => {
        for (const be of [wasm, wasm2]) {
          const { w, values: host } = weight(be, fmt, rows, cols, rows * 31 + cols);
          const values = await valuesOf(w, host);
          const wide = ops.widen(w);
          expect(bitsOf((await wide.data()) as Float32Array)).toEqual(bitsOf(values));
          const ids = tensor(Int32Array.from([rows - 1, 0, 2 % rows, rows - 1]), [4], { backend: be, dtype: 'int32' });
          const rowsOut = ops.embedding(w, ids);
          const expected = new Float32Array(4 * cols);
          [rows - 1, 0, 2 % rows, rows - 1].forEach((r, i) => expected.set(values.subarray(r * cols, (r + 1) * cols), i * cols));
          expect(bitsOf((await rowsOut.data()) as Float32Array)).toEqual(bitsOf(expected));
          for (const t of [wide, ids, rowsOut]) t.dispose();
          w.dispose();
        }
      });

      if (fmt === 'float16') continue; // Inf/NaN patterns: products are not comparable
      for (const m of [1, 3]) {
        for (const transposeW of [true, false]) {
          it(`${fmt} [${rows}, ${cols}] ${transposeW ? `x [${m}, ${cols}]·Wᵀ` : `dY [${m}, ${rows}]·W`}: wasm vs float64`, async () => {
            for (const be of [wasm, wasm2, js]) {
              const { w, values: host } = weight(be, fmt, rows, cols, rows * 31 + cols);
              const values = await valuesOf(w, host);
              const inner = transposeW ? cols : rows;
              const outCols = transposeW ? rows : cols;
              const xs = seeded(m * inner, 5 + m);
              const x = tensor(xs, [m, inner], { backend: be });
              const y = ops.narrowMatmul(x, w, transposeW);
              const got = (await y.data()) as Float32Array;
              let worst = 0;
              for (let i = 0; i < m; i++) {
                for (let j = 0; j < outCols; j++) {
                  let s = 0;
                  let mag = 0;
                  for (let p = 0; p < inner; p++) {
                    const wv = transposeW ? values[j * cols + p]! : values[p * cols + j]!;
                    s += xs[i * inner + p]! * wv;
                    mag += Math.abs(xs[i * inner + p]! * wv);
                  }
                  worst = Math.max(worst, Math.abs(got[i * outCols + j]! - s) / (mag || 1));
                }
              }
              expect(worst).toBeLessThan(1e-6);
              x.dispose();
              y.dispose();
              w.dispose();
            }
          });
        }
      }

      // (float16 took its `continue` above: Inf/NaN patterns.)
      it(`${fmt} [${rows}, ${cols}]: the weight norm in both layouts vs float64`, async () => {
        for (const be of [wasm, wasm2, js]) {
          for (const transposeW of [false, true]) {
            const { w, values: host } = weight(be, fmt, rows, cols, 77 + rows);
            const values = await valuesOf(w, host);
            const [out, inF] = transposeW ? [cols, rows] : [rows, cols];
            const rank = 3;
            const a = seeded(rank * inF, 3);
            const b = seeded(out * rank, 4);
            const at = tensor(a, [rank, inF], { backend: be });
            const bt = tensor(b, [out, rank], { backend: be });
            const norms = ops.weightNorm(w, at, bt, 0.5, { transposeW });
            const got = (await norms.data()) as Float32Array;
            for (let o = 0; o < out; o++) {
              let sum = 0;
              for (let i = 0; i < inF; i++) {
                let ba = 0;
                for (let k = 0; k < rank; k++) ba += b[o * rank + k]! * a[k * inF + i]!;
                const v = values[transposeW ? i * out + o : o * inF + i]! + 0.5 * ba;
                sum += v * v;
              }
              expect(Math.abs(got[o]! - Math.sqrt(sum))).toBeLessThanOrEqual(1e-5 * Math.sqrt(sum) + 1e-30);
            }
            for (const t of [at, bt, norms] as Tensor[]) t.dispose();
            w.dispose();
          }
        }
      });
    }
  }

  it('weight norms whose float32 squares underflow are redone in float64 (a zero output, a tiny one)', async () => {
    const [out, inF, rank] = [16, 64, 2];
    for (const be of [wasm, wasm2]) {
      for (const fmt of ['bfloat16', 'nf4'] as const) {
        for (const transposeW of [false, true]) {
          const [rows, cols] = transposeW ? [inF, out] : [out, inF];
          const src = seeded(rows * cols, 9).map((v) => v * 0.2);
          // Output 3 all zero, output 5 of magnitude 1e-25 (its float32 squares underflow).
          for (let i = 0; i < inF; i++) {
            const at = (o: number) => (transposeW ? i * out + o : o * inF + i);
            src[at(3)] = 0;
            src[at(5)] = Math.fround(src[at(5)]! * 1e-24);
          }
          const bits = Uint16Array.from(src, f32ToBf16);
          const w: Weight =
            fmt === 'bfloat16'
              ? tensor(bits, [rows, cols], { backend: be, dtype: 'bfloat16' })
              : QuantizedWeight.quantize(src, [rows, cols], be, { format: 'nf4', name: 'w' });
          const values =
            w instanceof QuantizedWeight
              ? dequantizeHost(await w.toHost())
              : Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
          const a = seeded(rank * inF, 3);
          const b = seeded(out * rank, 4);
          b.fill(0, 3 * rank, 4 * rank);
          b.fill(0, 5 * rank, 6 * rank);
          const at = tensor(a, [rank, inF], { backend: be });
          const bt = tensor(b, [out, rank], { backend: be });
          const norms = ops.weightNorm(w, at, bt, 0.5, { transposeW });
          const got = (await norms.data()) as Float32Array;
          expect(got[3]).toBe(0);
          let sum = 0;
          for (let i = 0; i < inF; i++) sum += values[transposeW ? i * out + 5 : 5 * inF + i]! ** 2;
          // (nf4 stored [in, out]: output 5 shares its blocks with larger values and quantizes to 0.)
          if (!(fmt === 'nf4' && transposeW)) expect(sum).toBeGreaterThan(0);
          expect(Math.abs(got[5]! - Math.sqrt(sum))).toBeLessThanOrEqual(1e-5 * Math.sqrt(sum));
          for (const t of [at, bt, norms] as Tensor[]) t.dispose();
          w.dispose();
        }
      }
    }
  });

  // The 16-bit GEMV reads 32 elements per step, then 8, then one at a time (x split by parity per 8).
  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`${dtype} GEMV through every step size (cols 8 … 8200: one row at a time, four from 8192), one and two threads, vs float64`, async () => {
      for (const be of [wasm, wasm2]) {
        for (const cols of [8, 24, 32, 40, 56, 64, 75, 101, 8192, 8195, 8200]) {
          const rows = 7;
          const src = seeded(rows * cols, cols).map((v) => v * 0.5);
          // float16: finite values only (Inf/NaN products are not comparable).
          const bits = Uint16Array.from(src, (v) => (dtype === 'bfloat16' ? f32ToBf16(v) : f32ToF16(v)));
          const values = Float32Array.from(bits, dtype === 'bfloat16' ? bf16ToF32 : f16ToF32);
          const w = tensor(bits, [rows, cols], { backend: be, dtype });
          const xs = seeded(cols, 3 + cols);
          const x = tensor(xs, [1, cols], { backend: be });
          const y = ops.narrowMatmul(x, w, true);
          const got = (await y.data()) as Float32Array;
          for (let r = 0; r < rows; r++) {
            let s = 0;
            let mag = 0;
            for (let k = 0; k < cols; k++) {
              s += xs[k]! * values[r * cols + k]!;
              mag += Math.abs(xs[k]! * values[r * cols + k]!);
            }
            expect(Math.abs(got[r]! - s) / mag, `row ${r} of [${rows}, ${cols}]`).toBeLessThan(1e-6);
          }
          for (const t of [w, x, y] as Tensor[]) t.dispose();
        }
      }
    });
  }

  // 4-bit GEMV where blocks straddle rows: pieces cut at block boundaries, odd heads (odd cols), 4-element steps, tails.
  it('nf4/fp4 GEMV with blocks straddling rows (odd and even cols, blocksize 64 and 128), one and two threads, vs float64', async () => {
    for (const be of [wasm, wasm2]) {
      for (const format of ['nf4', 'fp4'] as const) {
        for (const [rows, cols, blocksize] of [
          [7, 131, 64],
          [4, 200, 64],
          [5, 77, 128],
          [3, 1, 64],
        ] as const) {
          const src = seeded(rows * cols, cols + rows).map((v) => v * 0.3);
          const w = QuantizedWeight.quantize(src, [rows, cols], be, { format, blocksize, name: 'w' });
          const values = dequantizeHost(await w.toHost());
          const xs = seeded(cols, 2 * cols);
          const x = tensor(xs, [1, cols], { backend: be });
          const y = ops.narrowMatmul(x, w, true);
          const got = (await y.data()) as Float32Array;
          for (let r = 0; r < rows; r++) {
            let sum = 0;
            let mag = 0;
            for (let k = 0; k < cols; k++) {
              sum += xs[k]! * values[r * cols + k]!;
              mag += Math.abs(xs[k]! * values[r * cols + k]!);
            }
            expect(Math.abs(got[r]! - sum) / (mag || 1), `${format} row ${r} of [${rows}, ${cols}] block ${blocksize}`).toBeLessThan(1e-6);
          }
          for (const t of [x, y] as Tensor[]) t.dispose();
          w.dispose();
        }
      }
    }
  });

  it('bf16/f16 GEMV widens every 16-bit pattern exactly, in every lane position (x of ones, one pattern per row)', async () => {
    // Row p holds pattern p at column p % 45 (45 = one 32-element step, one 8-element step, a tail of 5), zeros
    // elsewhere, so y[p] is pattern p's value: subnormals, ±Inf and NaN included (−0 sums to +0).
    const [rows, cols] = [65536, 45];
    const bits = new Uint16Array(rows * cols);
    for (let p = 0; p < rows; p++) bits[p * cols + (p % cols)] = p;
    for (const be of [wasm, wasm2]) {
      for (const dtype of ['bfloat16', 'float16'] as const) {
        const w = tensor(bits, [rows, cols], { backend: be, dtype });
        const x = tensor(new Float32Array(cols).fill(1), [1, cols], { backend: be });
        const y = ops.narrowMatmul(x, w, true);
        const got = (await y.data()) as Float32Array;
        const bad: string[] = [];
        for (let p = 0; p < rows; p++) {
          const want = dtype === 'bfloat16' ? bf16ToF32(p) : f16ToF32(p);
          const ok = Number.isNaN(want) ? Number.isNaN(got[p]) : got[p] === want;
          if (!ok && bad.length < 4) bad.push(`0x${p.toString(16)}: ${got[p]} (want ${want})`);
        }
        expect(bad, dtype).toEqual([]);
        for (const t of [w, x, y] as Tensor[]) t.dispose();
      }
    }
  });

  it('a gather index outside the table is a typed error naming it', () => {
    const { w } = weight(wasm, 'nf4', 4, 64, 1);
    const ids = tensor(Int32Array.from([0, 4]), [2], { backend: wasm, dtype: 'int32' });
    expect(() => ops.embedding(w, ids)).toThrow(/gatherNarrow: index 4 at position 1 is outside a table of 4 rows/);
    ids.dispose();
    w.dispose();
  });

  it('leaves no buffers behind', () => {
    for (const be of backends) expect(be.liveBuffers()).toBe(0);
  });
});
