/**
 * Tier 4: narrow weights (bfloat16, float16, and bitsandbytes' nf4 / fp4 / int8 packed forms, see
 * docs/narrow-weights.md) through core's ops — dequantize, x·Wᵀ (GEMV and GEMM), dY·W, the embedding gather
 * and the DoRA weight norm — against float64 host values of the dequantized weight. A backend without the
 * optional narrow kernels runs core's composites here, so a contributed backend passes for free; one with
 * them is also compared with the composite on the same backend.
 *
 * Dequantized values are products rounded once to float32, so widening must be exact (no tolerance).
 */
import {
  type Backend,
  backward,
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
import { assertClose, assertEqual } from '../compare.js';
import type { SeededRandom } from '../prng.js';
import type { CaseContext, ConformanceCase, ConformanceTier } from '../types.js';
import { weightNormHost } from './fused.js';

const T = 'narrow';

export type NarrowFormat = 'bfloat16' | 'float16' | 'nf4' | 'fp4' | 'nf4-double' | 'int8';
export const NARROW_FORMATS: readonly NarrowFormat[] = ['bfloat16', 'float16', 'nf4', 'fp4', 'nf4-double', 'int8'];

interface Made {
  readonly w: Weight;
  /** The weight's exact float32 values after widening (host). */
  readonly values: Float32Array;
}

/** Builds a narrow weight [rows, cols] on `backend` and its host values. */
function makeWeight(format: NarrowFormat, rows: number, cols: number, r: SeededRandom, backend: Backend): Made {
  const src = r.float32(rows * cols, (q) => q.normal() * 0.05);
  // An outlier and a zero block keep the absmax paths honest.
  src[3] = 0.9;
  if (src.length >= 192) src.fill(0, 128, 192);
  if (format === 'bfloat16' || format === 'float16') {
    const [enc, dec] = format === 'bfloat16' ? [f32ToBf16, bf16ToF32] : [f32ToF16, f16ToF32];
    const bitsArr = Uint16Array.from(src, enc);
    return { w: tensor(bitsArr, [rows, cols], { backend, dtype: format }), values: Float32Array.from(bitsArr, dec) };
  }
  const fmt = format === 'nf4-double' ? 'nf4' : format;
  const q = QuantizedWeight.quantize(src, [rows, cols], backend, {
    format: fmt,
    doubleQuant: format === 'nf4-double',
    name: `conformance.${format}`,
  });
  // The host values come from the packed form read back (what the backend holds).
  return { w: q, values: new Float32Array(0) };
}

async function hostValues(m: Made): Promise<Float32Array> {
  if (!(m.w instanceof QuantizedWeight)) return m.values;
  return dequantizeHost(await m.w.toHost());
}

/** Runs `body` with core tensors on the backend under test and frees them all afterwards. */
async function withWeight(
  ctx: CaseContext,
  format: NarrowFormat,
  rows: number,
  cols: number,
  seed: number,
  body: (w: Weight, values: Float32Array, r: SeededRandom, live: Tensor[]) => Promise<void>,
): Promise<void> {
  if ((format === 'bfloat16' || format === 'float16') && !ctx.supports(format)) ctx.skip(`the backend cannot store ${format}`);
  const r = ctx.random(seed);
  const made = makeWeight(format, rows, cols, r, ctx.backend);
  const live: Tensor[] = [];
  try {
    await body(made.w, await hostValues(made), r, live);
  } finally {
    for (const t of live) t.dispose();
    made.w.dispose();
  }
}

function matmulHost(x: Float32Array, w: Float32Array, m: number, n: number, k: number, transposeW: boolean) {
  // transposeW: x [m, k] · Wᵀ, W [n, k] → [m, n]; else x [m, n] · W, W [n, k] → [m, k]
  const outCols = transposeW ? n : k;
  const inner = transposeW ? k : n;
  const y = new Float64Array(m * outCols);
  const mag = new Float64Array(m * outCols);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < outCols; j++) {
      let s = 0;
      let a = 0;
      for (let p = 0; p < inner; p++) {
        const wv = transposeW ? w[j * k + p]! : w[p * k + j]!;
        s += x[i * inner + p]! * wv;
        a += Math.abs(x[i * inner + p]! * wv);
      }
      y[i * outCols + j] = s;
      mag[i * outCols + j] = a;
    }
  }
  return { y, mag };
}

const SHAPES = { rows: 24, cols: 96 }; // 1.5 blocks of 64 per row: blocks straddle rows

function dequantizeCase(format: NarrowFormat): ConformanceCase {
  return {
    id: `${T}/widen.${format}`,
    title: `widen a ${format} W [${SHAPES.rows}, ${SHAPES.cols}] to float32, exactly`,
    async run(ctx) {
      await withWeight(ctx, format, SHAPES.rows, SHAPES.cols, 1500, async (w, values, _r, live) => {
        const wide = ops.widen(w);
        live.push(wide);
        assertEqual(`widen.${format}`, await wide.data(), values);
        if (w instanceof QuantizedWeight && ctx.backend.dequantize) {
          const comp = ops.dequantizeComposite(w);
          live.push(comp);
          assertEqual(`dequantize.${format} vs the composite`, await wide.data(), await comp.data());
        }
      });
    },
  };
}

function matmulCase(format: NarrowFormat, m: number, transposeW: boolean): ConformanceCase {
  const { rows: n, cols: k } = SHAPES;
  const what = transposeW ? `x [${m}, ${k}] · Wᵀ` : `dY [${m}, ${n}] · W`;
  return {
    id: `${T}/matmul.${format}.${transposeW ? 'xwt' : 'dyw'}.m${m}`,
    title: `${what} with a ${format} W [${n}, ${k}]${m === 1 ? ' (GEMV)' : ''}`,
    async run(ctx) {
      await withWeight(ctx, format, n, k, 1600 + m, async (w, values, r, live) => {
        const xs = r.float32(m * (transposeW ? k : n));
        const x = tensor(xs, [m, transposeW ? k : n], { backend: ctx.backend });
        live.push(x);
        const y = ops.narrowMatmul(x, w, transposeW);
        live.push(y);
        const got = await y.data();
        const { y: host, mag } = matmulHost(xs, values, m, n, k, transposeW);
        assertClose(`matmul.${format} vs float64`, got, Float32Array.from(host), ctx.closeOptions({ magnitude: mag }));
        if (ctx.backend.matmulNarrow) {
          const wide = ops.widen(w);
          live.push(wide);
          const comp = ops.matmul(x, wide, { transposeB: transposeW });
          live.push(comp);
          assertClose(`matmul.${format} vs the composite`, got, await comp.data(), ctx.closeOptions({ magnitude: mag }));
        }
      });
    },
  };
}

function linearGradCase(format: NarrowFormat): ConformanceCase {
  return {
    id: `${T}/linear-grad.${format}`,
    title: `linear with a frozen ${format} W: dx = dY·W through autograd, W gets no gradient`,
    async run(ctx) {
      const { rows: n, cols: k } = SHAPES;
      await withWeight(ctx, format, n, k, 1700, async (w, values, r, live) => {
        const xs = r.float32(3 * k);
        const x = tensor(xs, [3, k], { backend: ctx.backend, requiresGrad: true });
        live.push(x);
        const y = ops.linear(x, w);
        live.push(y);
        const loss = ops.sum(y);
        live.push(loss);
        backward(loss);
        const gx = x.grad!;
        // d(sum(x·Wᵀ))/dx = ones [3, n] · W
        const { y: host, mag } = matmulHost(new Float32Array(3 * n).fill(1), values, 3, n, k, false);
        assertClose(`linear-grad.${format}`, await gx.data(), Float32Array.from(host), ctx.closeOptions({ magnitude: mag }));
        if (!(w instanceof QuantizedWeight) && w.grad !== null) throw new Error(`linear-grad.${format}: a narrow weight got a gradient`);
      });
    },
  };
}

function gatherCase(format: NarrowFormat): ConformanceCase {
  return {
    id: `${T}/gather.${format}`,
    title: `embedding rows of a ${format} table [${SHAPES.rows}, ${SHAPES.cols}] (first, last, repeated), exactly`,
    async run(ctx) {
      const { rows, cols } = SHAPES;
      await withWeight(ctx, format, rows, cols, 1800, async (w, values, _r, live) => {
        const ids = [0, rows - 1, 5, 5, 1, 17];
        const idx = tensor(Int32Array.from(ids), [2, 3], { backend: ctx.backend, dtype: 'int32' });
        live.push(idx);
        const y = ops.embedding(w, idx);
        live.push(y);
        if (y.shape.join() !== [2, 3, cols].join()) throw new Error(`gather.${format}: shape [${y.shape}] is not [2, 3, ${cols}]`);
        const host = new Float32Array(ids.length * cols);
        ids.forEach((id, i) => host.set(values.subarray(id * cols, (id + 1) * cols), i * cols));
        assertEqual(`gather.${format}`, await y.data(), host);
      });
    },
  };
}

function weightNormCase(format: NarrowFormat, transposeW: boolean): ConformanceCase {
  return {
    id: `${T}/weightNorm.${format}${transposeW ? '.transposed' : ''}`,
    title: `‖W + s·B·A‖ with a ${format} W${transposeW ? ' stored [in, out]' : ''} vs float64`,
    async run(ctx) {
      const { rows, cols } = SHAPES;
      await withWeight(ctx, format, rows, cols, 1900, async (w, values, r, live) => {
        const [out, inF] = transposeW ? [cols, rows] : [rows, cols];
        const rank = 4;
        const a = r.float32(rank * inF, (q) => q.normal() * 0.1);
        const b = r.float32(out * rank, (q) => q.normal() * 0.1);
        const at = tensor(a, [rank, inF], { backend: ctx.backend });
        const bt = tensor(b, [out, rank], { backend: ctx.backend });
        live.push(at, bt);
        const norms = ops.weightNorm(w, at, bt, 0.75, { transposeW });
        live.push(norms);
        const got = await norms.data();
        const host = weightNormHost(values, a, b, out, inF, rank, 0.75, transposeW);
        assertClose(`weightNorm.${format} vs float64`, got, Float32Array.from(host), { tolerance: { rtol: ctx.tolerance.rtol, atol: 0 } });
        if (ctx.backend.weightNormNarrow) {
          const wide = ops.widen(w);
          live.push(wide);
          const comp = ops.weightNormComposite(wide, at, bt, 0.75, transposeW);
          live.push(comp);
          assertClose(`weightNorm.${format} vs the composite`, got, await comp.data(), ctx.closeOptions());
        }
      });
    },
  };
}

export const narrowTier: ConformanceTier = {
  id: T,
  title: 'narrow weights (bf16, f16, nf4, fp4, int8) against float64 values of the dequantized weight',
  cases: NARROW_FORMATS.flatMap((f) => [
    dequantizeCase(f),
    matmulCase(f, 1, true),
    matmulCase(f, 5, true),
    matmulCase(f, 1, false),
    matmulCase(f, 5, false),
    linearGradCase(f),
    gatherCase(f),
    weightNormCase(f, false),
    weightNormCase(f, true),
  ]),
};
