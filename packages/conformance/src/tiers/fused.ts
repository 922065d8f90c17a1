/**
 * Tier 3: the optional fused kernels against the composite the suite builds from primitive kernels on the
 * same backend (matmul, affine, binary, unary square/sqrt, reduce), and against float64 host values.
 * A backend without a fused kernel skips these cases: core then uses its own composite.
 *
 * Accumulation: a weight norm must not overflow for |W| ≈ 1e18 rows of 64 (squares ≈ 1e36, sum ≈ 6e37,
 * still finite in float32, so even a plain float32 sum passes), and a zero row must give exactly 0. The
 * tiny-magnitude case (|W| ≈ 1e-25, squares underflow float32) is passed only by accumulating in wider
 * precision or scaling; a float32 backend may skip it with that reason.
 */
import type { Backend, Conv3dParams, TensorInfo } from '@dorajs/core';
import { assertClose } from '../compare.js';
import { convFilterGradHost, convHost, convInputGradHost, convOutputShape, sizeOf } from '../host-math.js';
import type { SeededRandom } from '../prng.js';
import type { CaseContext, ConformanceCase, ConformanceTier } from '../types.js';

const T = 'fused';

export interface WeightNormCase {
  readonly id: string;
  readonly title: string;
  readonly out: number;
  readonly inF: number;
  readonly r: number;
  readonly scale: number;
  /** W stored [in, out] (Conv1D, Embedding). */
  readonly transposeW?: boolean;
  /** Draw for W (default normal); A and B are normal·0.5. */
  readonly drawW?: (r: SeededRandom) => number;
  /** Rows (output features) whose W and B are zeroed: their norm must be exactly 0. */
  readonly zeroRows?: readonly number[];
  /** Also require closeness to the float64 norm only (the float32 composite underflows here). */
  readonly hostOnly?: boolean;
  readonly seed: number;
}

const signed = (lo: number, hi: number) => (r: SeededRandom) => r.uniform(lo, hi) * (r.next() < 0.5 ? -1 : 1);

export const WEIGHT_NORM_CASES: readonly WeightNormCase[] = [
  {
    id: 'linear',
    title: 'Linear layout W [7, 300], r 6 (K beyond a tile, r not a multiple of 4)',
    out: 7,
    inF: 300,
    r: 6,
    scale: 2,
    seed: 900,
  },
  { id: 'linear-odd', title: 'W [13, 33], r 3', out: 13, inF: 33, r: 3, scale: 0.5, seed: 901 },
  {
    id: 'transposed',
    title: 'transposeW: W stored [in 50, out 9] (transformers Conv1D)',
    out: 9,
    inF: 50,
    r: 3,
    scale: 0.5,
    transposeW: true,
    seed: 902,
  },
  {
    id: 'embedding',
    title: 'transposeW: an Embedding [vocab 40, dim 12], norm per dim over the vocabulary',
    out: 12,
    inF: 40,
    r: 4,
    scale: 1,
    transposeW: true,
    seed: 903,
  },
  {
    id: 'conv2d-view',
    title: 'Conv2d weight [6, 3, 3, 3] viewed as [6, 27], A [4, 27], B [6, 4]',
    out: 6,
    inF: 27,
    r: 4,
    scale: 1,
    seed: 904,
  },
  { id: 'rank-1', title: 'r = 1, out = 1', out: 1, inF: 17, r: 1, scale: 3, seed: 905 },
  { id: 'scale-zero', title: 'scale 0 gives ‖W‖ per row', out: 5, inF: 19, r: 2, scale: 0, seed: 906 },
  {
    id: 'zero-row',
    title: 'rows 0 and 3 of W and B are zero: their norm is exactly 0',
    out: 5,
    inF: 16,
    r: 2,
    scale: 1,
    zeroRows: [0, 3],
    seed: 907,
  },
  {
    id: 'zero-row-transposed',
    title: 'transposeW with zero output features 1 and 4',
    out: 6,
    inF: 10,
    r: 2,
    scale: 1,
    transposeW: true,
    zeroRows: [1, 4],
    seed: 908,
  },
  {
    id: 'large-magnitudes',
    title: '|W| ≈ 1e18 (squares ≈ 1e36): finite, not Inf',
    out: 4,
    inF: 64,
    r: 2,
    scale: 1,
    drawW: signed(0.5e18, 1e18),
    seed: 909,
  },
  {
    id: 'tiny-magnitudes',
    title: '|W| ≈ 1e-25 (squares underflow float32): needs wide accumulation',
    out: 3,
    inF: 64,
    r: 2,
    scale: 1,
    drawW: signed(0.5e-25, 1e-25),
    hostOnly: true,
    seed: 910,
  },
];

interface WeightNormInputs {
  readonly w: Float32Array;
  readonly a: Float32Array;
  readonly b: Float32Array;
  readonly wShape: number[];
}

function weightNormInputs(ctx: CaseContext, wc: WeightNormCase): WeightNormInputs {
  const r = ctx.random(wc.seed);
  const w = r.float32(wc.out * wc.inF, wc.drawW);
  const a = r.float32(wc.r * wc.inF, (q) => q.normal() * 0.5);
  const b = r.float32(wc.out * wc.r, (q) => q.normal() * 0.5);
  // Tiny weights with a normal-sized adapter would drown them: scale the adapter with W.
  if (wc.drawW) for (let i = 0; i < b.length; i++) b[i] = Math.fround(b[i]! * Math.abs(w[0]!));
  for (const o of wc.zeroRows ?? []) {
    for (let i = 0; i < wc.inF; i++) w[wc.transposeW ? i * wc.out + o : o * wc.inF + i] = 0;
    for (let j = 0; j < wc.r; j++) b[o * wc.r + j] = 0;
  }
  return { w, a, b, wShape: wc.transposeW ? [wc.inF, wc.out] : [wc.out, wc.inF] };
}

/** ‖W_oi + s·B·A‖ per row in float64. */
export function weightNormHost(
  w: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  out: number,
  inF: number,
  r: number,
  scale: number,
  transposeW: boolean,
): Float64Array {
  const norms = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let sum = 0;
    for (let i = 0; i < inF; i++) {
      let ba = 0;
      for (let j = 0; j < r; j++) ba += b[o * r + j]! * a[j * inF + i]!;
      const v = w[transposeW ? i * out + o : o * inF + i]! + scale * ba;
      sum += v * v;
    }
    norms[o] = Math.sqrt(sum);
  }
  return norms;
}

/** The composite default, from primitive kernels only: sqrt(Σ_in (W_oi + s·B·A)²). */
function weightNormComposite(
  ctx: CaseContext,
  w: TensorInfo,
  a: TensorInfo,
  b: TensorInfo,
  scale: number,
  transposeW: boolean,
): TensorInfo {
  const k: Backend = ctx.backend;
  const [out, inF] = [b.shape[0]!, a.shape[1]!];
  const ba = ctx.own(k.matmul(b, a, {}, [out, inF]), [out, inF], 'float32');
  const sba = ctx.own(k.affine(ba, scale, 0), [out, inF], 'float32');
  const woi = transposeW ? ctx.own(k.transpose(w, [1, 0]), [out, inF], 'float32') : w;
  const v = ctx.own(k.binary('add', woi, sba, [out, inF]), [out, inF], 'float32');
  const sq = ctx.own(k.unary('square', v), [out, inF], 'float32');
  const sum = ctx.own(k.reduce('sum', sq, [1], [out, 1]), [out, 1], 'float32');
  return ctx.own(k.unary('sqrt', sum), [out, 1], 'float32');
}

function weightNormCase(wc: WeightNormCase): ConformanceCase {
  return {
    id: `${T}/weightNorm.${wc.id}`,
    title: `weightNorm: ${wc.title}`,
    async run(ctx) {
      const fused = ctx.backend.weightNorm?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused weightNorm (core uses its composite)');
      const { w, a, b, wShape } = weightNormInputs(ctx, wc);
      const [wt, at, bt] = [ctx.tensor(w, wShape), ctx.tensor(a, [wc.r, wc.inF]), ctx.tensor(b, [wc.out, wc.r])];
      const norms = ctx.own(fused(wt, at, bt, wc.scale, { transposeW: !!wc.transposeW }), [wc.out], 'float32');
      const got = await ctx.read(norms);
      const host = weightNormHost(w, a, b, wc.out, wc.inF, wc.r, wc.scale, !!wc.transposeW);
      // A sum of squares cannot cancel, so the bound is purely relative (an atol would hide a norm of
      // 1e-24 that came out as 0).
      const { rtol } = ctx.tolerance;
      assertClose(`weightNorm.${wc.id} vs float64`, got, Float32Array.from(host), { tolerance: { rtol, atol: 0 } });
      for (const o of wc.zeroRows ?? []) {
        if (got[o] !== 0) throw new Error(`weightNorm.${wc.id}: row ${o} of W and B is zero, its norm is ${got[o]}, expected exactly 0`);
      }
      if (wc.hostOnly) return;
      const composite = await ctx.read(weightNormComposite(ctx, wt, at, bt, wc.scale, !!wc.transposeW));
      assertClose(`weightNorm.${wc.id} vs the composite`, got, composite, ctx.closeOptions());
    },
  };
}

export interface DoraComposeCase {
  readonly id: string;
  readonly title: string;
  readonly shape: readonly number[];
  readonly scale: number;
  readonly bias: boolean;
  readonly seed: number;
}

export const DORA_COMPOSE_CASES: readonly DoraComposeCase[] = [
  { id: 'rank3-bias', title: 'base/lora [2,3,5], g [5], bias [5]', shape: [2, 3, 5], scale: 0.5, bias: true, seed: 950 },
  { id: 'rank2-no-bias', title: 'base/lora [4,7], g [7], no bias', shape: [4, 7], scale: 2, bias: false, seed: 951 },
  { id: 'rank1', title: 'a single row [9] with bias', shape: [9], scale: 1.25, bias: true, seed: 952 },
];

function doraComposeCase(dc: DoraComposeCase): ConformanceCase {
  return {
    id: `${T}/doraCompose.${dc.id}`,
    title: `doraCompose: ${dc.title}`,
    async run(ctx) {
      const fused = ctx.backend.doraCompose?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused doraCompose (core uses its composite)');
      const k = ctx.backend;
      const out = dc.shape[dc.shape.length - 1]!;
      const size = dc.shape.reduce((p, d) => p * d, 1);
      const r = ctx.random(dc.seed);
      const [base, lora] = [r.float32(size), r.float32(size)];
      const g = r.float32(out, (q) => q.uniform(-2, 2));
      g[0] = 0; // a zero magnitude scale leaves only the bias
      const bias = dc.bias ? r.float32(out) : null;
      const [bt, lt, gt] = [ctx.tensor(base, dc.shape), ctx.tensor(lora, dc.shape), ctx.tensor(g, [out])];
      const biasT = bias ? ctx.tensor(bias, [out]) : null;
      const y = ctx.own(fused(bt, lt, gt, dc.scale, biasT), dc.shape, 'float32');
      const got = await ctx.read(y);
      const host = Float32Array.from(base, (v, i) => (bias ? bias[i % out]! : 0) + g[i % out]! * (v + dc.scale * lora[i]!));
      assertClose(`doraCompose.${dc.id} vs float64`, got, host, ctx.closeOptions());
      // composite: bias + g ⊙ (base + scale·lora)
      const sl = ctx.own(k.affine(lt, dc.scale, 0), dc.shape, 'float32');
      const sum = ctx.own(k.binary('add', bt, sl, dc.shape), dc.shape, 'float32');
      const scaled = ctx.own(k.binary('mul', gt, sum, dc.shape), dc.shape, 'float32');
      const composite = biasT ? ctx.own(k.binary('add', biasT, scaled, dc.shape), dc.shape, 'float32') : scaled;
      assertClose(`doraCompose.${dc.id} vs the composite`, got, await ctx.read(composite), ctx.closeOptions());
    },
  };
}

export interface WriteSliceCase {
  readonly id: string;
  readonly title: string;
  readonly dst: readonly number[];
  readonly axis: number;
  readonly offset: number;
  readonly length: number;
  readonly dtype: 'float32' | 'int32' | 'bfloat16' | 'float16' | 'int8' | 'uint8';
  readonly seed: number;
}

export const WRITE_SLICE_CASES: readonly WriteSliceCase[] = [
  {
    id: 'kv-step',
    title: 'one position into a [2,3,8,4] cache at 5 (axis 2)',
    dst: [2, 3, 8, 4],
    axis: 2,
    offset: 5,
    length: 1,
    dtype: 'float32',
    seed: 960,
  },
  {
    id: 'kv-prefill',
    title: 'six positions into a [2,3,8,4] cache at 0',
    dst: [2, 3, 8, 4],
    axis: 2,
    offset: 0,
    length: 6,
    dtype: 'float32',
    seed: 961,
  },
  { id: 'axis0-int', title: 'int32 rows 1..2 of a [4,5]', dst: [4, 5], axis: 0, offset: 1, length: 2, dtype: 'int32', seed: 962 },
  { id: 'last-axis', title: 'the last axis of a [3,7] at 6', dst: [3, 7], axis: 1, offset: 6, length: 1, dtype: 'float32', seed: 963 },
  {
    id: 'kv-prefill-large',
    title: '200 positions into a [1,8,300,64] cache at 37 (1600 workgroups of 64)',
    dst: [1, 8, 300, 64],
    axis: 2,
    offset: 37,
    length: 200,
    dtype: 'float32',
    seed: 964,
  },
  // Packed dtypes: slabs that start and end inside 32-bit words, and rows whose slabs share a word.
  {
    id: 'bf16-rows-share-words',
    title: 'bfloat16: all of a [3,3] along axis 1 (odd rows share words)',
    dst: [3, 3],
    axis: 1,
    offset: 0,
    length: 3,
    dtype: 'bfloat16',
    seed: 965,
  },
  {
    id: 'f16-odd',
    title: 'float16: 3 of 5 at 1 in a [2,5,3] (odd starts and ends)',
    dst: [2, 5, 3],
    axis: 1,
    offset: 1,
    length: 3,
    dtype: 'float16',
    seed: 966,
  },
  {
    id: 'int8-shared',
    title: 'int8: 2 of 3 at 1 in a [4,3] (rows 1 and 2 share a word)',
    dst: [4, 3],
    axis: 1,
    offset: 1,
    length: 2,
    dtype: 'int8',
    seed: 967,
  },
  { id: 'uint8-axis0', title: 'uint8: rows 2..3 of a [5,3]', dst: [5, 3], axis: 0, offset: 2, length: 2, dtype: 'uint8', seed: 968 },
];

/** Random values of a dtype: float32 values, or integers covering the whole range (raw bits for 16-bit floats). */
function drawValues(
  r: { uniform(lo: number, hi: number): number; float32(n: number): Float32Array },
  dtype: WriteSliceCase['dtype'],
  n: number,
) {
  const ints = (lo: number, hi: number) => Array.from({ length: n }, () => Math.min(hi, Math.floor(r.uniform(lo, hi + 1))));
  switch (dtype) {
    case 'float32':
      return r.float32(n);
    case 'int32':
      return Int32Array.from(ints(-1000, 999));
    case 'bfloat16':
    case 'float16':
      return Uint16Array.from(ints(0, 65535));
    case 'int8':
      return Int8Array.from(ints(-128, 127));
    case 'uint8':
      return Uint8Array.from(ints(0, 255));
  }
}

/** In place, exact: every element outside the slab keeps its value, the slab takes src's. */
function writeSliceCase(wc: WriteSliceCase): ConformanceCase {
  return {
    id: `${T}/writeSlice.${wc.id}`,
    title: `writeSlice: ${wc.title}`,
    async run(ctx) {
      const write = ctx.backend.writeSlice?.bind(ctx.backend);
      if (!write) return ctx.skip('the backend has no writeSlice (core rebuilds the buffer with slice + concat)');
      if (!ctx.supports(wc.dtype)) return ctx.skip(`the backend has no ${wc.dtype}`);
      const srcShape = wc.dst.map((d, i) => (i === wc.axis ? wc.length : d));
      const count = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
      const r = ctx.random(wc.seed);
      const before = drawValues(r, wc.dtype, count(wc.dst));
      const src = drawValues(r, wc.dtype, count(srcShape));
      const dst = ctx.tensor(before, wc.dst, wc.dtype);
      write(dst, ctx.tensor(src, srcShape, wc.dtype), wc.axis, wc.offset);
      const inner = count(wc.dst.slice(wc.axis + 1));
      const expected = before.slice();
      for (let o = 0; o < count(wc.dst.slice(0, wc.axis)); o++) {
        for (let j = 0; j < wc.length * inner; j++)
          expected[o * wc.dst[wc.axis]! * inner + wc.offset * inner + j] = src[o * wc.length * inner + j]!;
      }
      await ctx.expectEqual(`writeSlice.${wc.id}`, dst, expected);
    },
  };
}

export interface RmsNormCase {
  readonly id: string;
  readonly title: string;
  readonly shape: readonly number[];
  readonly weight: boolean;
  /** Scales x (tiny or huge rows). */
  readonly magnitude: number;
  readonly seed: number;
}

export const RMS_NORM_CASES: readonly RmsNormCase[] = [
  { id: 'rows-weight', title: 'x [2,3,40], weight [40]', shape: [2, 3, 40], weight: true, magnitude: 1, seed: 970 },
  { id: 'one-row', title: 'x [1,1,2048] (a decode step), weight [2048]', shape: [1, 1, 2048], weight: true, magnitude: 3, seed: 971 },
  { id: 'no-weight-odd', title: 'x [5,7], no weight', shape: [5, 7], weight: false, magnitude: 1e-3, seed: 972 },
];

/** rmsNorm against float64 and against the composite of primitive kernels (square, mean, + eps, rsqrt, two muls). */
function rmsNormCase(rc: RmsNormCase): ConformanceCase {
  return {
    id: `${T}/rmsNorm.${rc.id}`,
    title: `rmsNorm: ${rc.title}`,
    async run(ctx) {
      const fused = ctx.backend.rmsNorm?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused rmsNorm (core uses its composite)');
      const k = ctx.backend;
      const eps = 1e-5;
      const n = rc.shape[rc.shape.length - 1]!;
      const size = rc.shape.reduce((p, d) => p * d, 1);
      const r = ctx.random(rc.seed);
      const x = r.float32(size, (q) => q.normal() * rc.magnitude);
      x.fill(0, 0, n); // a zero row: 0 · rsqrt(eps) = 0
      const w = rc.weight ? r.float32(n, (q) => q.uniform(-2, 2)) : null;
      const [xt, wt] = [ctx.tensor(x, rc.shape), w ? ctx.tensor(w, [n]) : null];
      const got = ctx.own(fused(xt, wt, eps), rc.shape, 'float32');
      const host = new Float64Array(size);
      for (let row = 0; row < size / n; row++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += x[row * n + i]! ** 2;
        const scale = 1 / Math.sqrt(s / n + eps);
        for (let i = 0; i < n; i++) host[row * n + i] = x[row * n + i]! * scale * (w ? w[i]! : 1);
      }
      await ctx.expectClose(`rmsNorm.${rc.id} vs float64`, got, host);
      const kept = [...rc.shape.slice(0, -1), 1];
      const sq = ctx.own(k.binary('mul', xt, xt, rc.shape), rc.shape, 'float32');
      const mean = ctx.own(k.reduce('mean', sq, [rc.shape.length - 1], kept), kept, 'float32');
      const inv = ctx.own(k.unary('rsqrt', ctx.own(k.affine(mean, 1, eps), kept, 'float32')), kept, 'float32');
      const y = ctx.own(k.binary('mul', xt, inv, rc.shape), rc.shape, 'float32');
      const composite = wt ? ctx.own(k.binary('mul', wt, y, rc.shape), rc.shape, 'float32') : y;
      await ctx.expectClose(`rmsNorm.${rc.id} vs the composite`, got, await ctx.read(composite));
    },
  };
}

export interface RotaryCase {
  readonly id: string;
  readonly title: string;
  /** x [batch, heads, seq, d] */
  readonly x: readonly [number, number, number, number];
  /** Rows of the cos/sin tables: 1 or batch. */
  readonly rows: number;
  readonly seed: number;
}

export const ROTARY_CASES: readonly RotaryCase[] = [
  { id: 'decode', title: 'x [1,4,1,8] (one token), tables [1,1,1,8]', x: [1, 4, 1, 8], rows: 1, seed: 980 },
  { id: 'per-row', title: 'x [2,3,5,6], tables [2,1,5,6] (left padding: positions per row)', x: [2, 3, 5, 6], rows: 2, seed: 981 },
];

/** rotary against the composite x·cos + cat(−x₂, x₁)·sin from primitive kernels: equal bit for bit. */
function rotaryCase(rc: RotaryCase): ConformanceCase {
  return {
    id: `${T}/rotary.${rc.id}`,
    title: `rotary: ${rc.title}`,
    async run(ctx) {
      const fused = ctx.backend.rotary?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused rotary (core uses its composite)');
      const k = ctx.backend;
      const [batch, heads, seq, d] = rc.x;
      const half = d / 2;
      const size = batch * heads * seq * d;
      const tableShape = [rc.rows, 1, seq, d];
      const r = ctx.random(rc.seed);
      const x = r.float32(size);
      const angles = r.float32(rc.rows * seq * half, (q) => q.uniform(-3, 3));
      const table = (f: (a: number) => number) =>
        Float32Array.from({ length: rc.rows * seq * d }, (_, i) => f(angles[Math.floor(i / d) * half + ((i % d) % half)]!));
      const [cos, sin] = [table(Math.cos), table(Math.sin)];
      const [xt, ct, st] = [ctx.tensor(x, rc.x), ctx.tensor(cos, tableShape), ctx.tensor(sin, tableShape)];
      const got = ctx.own(fused(xt, ct, st), rc.x, 'float32');
      const x1 = ctx.own(k.slice(xt, [0, 0, 0, 0], [batch, heads, seq, half]), [batch, heads, seq, half], 'float32');
      const x2 = ctx.own(k.slice(xt, [0, 0, 0, half], [batch, heads, seq, half]), [batch, heads, seq, half], 'float32');
      const neg = ctx.own(k.unary('neg', x2), [batch, heads, seq, half], 'float32');
      const rotated = ctx.own(k.concat([neg, x1], 3, rc.x), rc.x, 'float32');
      const a = ctx.own(k.binary('mul', xt, ct, rc.x), rc.x, 'float32');
      const b = ctx.own(k.binary('mul', rotated, st, rc.x), rc.x, 'float32');
      await ctx.expectEqual(`rotary.${rc.id} vs the composite`, got, await ctx.read(ctx.own(k.binary('add', a, b, rc.x), rc.x, 'float32')));
    },
  };
}

const UPLOAD_DTYPES = ['float32', 'int32', 'bfloat16', 'float16', 'int8', 'uint8'] as const;

/**
 * beginUpload: a [7, 9] tensor written in uneven pieces (one element, three, the rest in two), each piece a
 * view at an odd byte offset of a larger buffer, equals an upload of the same values bit for bit; an aborted
 * upload frees its storage.
 */
function beginUploadCase(dtype: (typeof UPLOAD_DTYPES)[number]): ConformanceCase {
  return {
    id: `${T}/beginUpload.${dtype}`,
    title: `beginUpload: ${dtype} [7, 9] in uneven pieces, then an aborted upload`,
    async run(ctx) {
      const begin = ctx.backend.beginUpload?.bind(ctx.backend);
      if (!begin) return ctx.skip('the backend has no beginUpload (core assembles on the host and uploads)');
      if (!ctx.supports(dtype)) return ctx.skip(`the backend has no ${dtype}`);
      const shape = [7, 9];
      const values = drawValues(ctx.random(980), dtype, 63);
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      const width = values.BYTES_PER_ELEMENT;
      const sink = begin(shape, dtype);
      let at = 0;
      for (const elements of [1, 3, 30, 29]) {
        const n = elements * width;
        const odd = new Uint8Array(n + 3);
        odd.set(bytes.subarray(at, at + n), 1);
        await sink.write(odd.subarray(1, 1 + n));
        odd.fill(0xa5); // the caller may reuse a piece once its write returned
        at += n;
      }
      const t = ctx.own(sink.finish(), shape, dtype);
      await ctx.expectEqual(`beginUpload.${dtype}`, t, values);
      const live = ctx.backend.liveBuffers();
      const aborted = begin(shape, dtype);
      await aborted.write(bytes.subarray(0, 5 * width));
      aborted.abort();
      if (ctx.backend.liveBuffers() !== live) {
        throw new Error(`beginUpload.${dtype}: abort left ${ctx.backend.liveBuffers() - live} storage buffer(s) alive`);
      }
    },
  };
}

export interface DoraLinearCase {
  readonly id: string;
  readonly title: string;
  readonly rows: number;
  readonly out: number;
  readonly inF: number;
  readonly r: number;
  readonly scale: number;
  readonly bias: boolean;
  readonly transposeW?: boolean;
  readonly seed: number;
}

/** Shapes for the fused DoRA Linear kernels: a decode step (one row), a prompt, W stored [in, out], odd sizes. */
export const DORA_LINEAR_CASES: readonly DoraLinearCase[] = [
  { id: 'decode', title: 'one row, W [40, 64], r 4, bias', rows: 1, out: 40, inF: 64, r: 4, scale: 0.8, bias: true, seed: 970 },
  { id: 'prompt', title: '9 rows, W [36, 44], r 3, no bias', rows: 9, out: 36, inF: 44, r: 3, scale: 2, bias: false, seed: 971 },
  {
    id: 'transposed',
    title: '5 rows, W stored [in 30, out 22] (Conv1D), bias',
    rows: 5,
    out: 22,
    inF: 30,
    r: 2,
    scale: 0.5,
    bias: true,
    transposeW: true,
    seed: 972,
  },
  { id: 'odd', title: '3 rows, W [13, 37], r 5', rows: 3, out: 13, inF: 37, r: 5, scale: 1.5, bias: true, seed: 973 },
];

function doraLinearInputs(ctx: CaseContext, dc: DoraLinearCase) {
  const r = ctx.random(dc.seed);
  const x = r.float32(dc.rows * dc.inF);
  const w = r.float32(dc.out * dc.inF);
  const a = r.float32(dc.r * dc.inF, (q) => q.normal() * 0.3);
  const b = r.float32(dc.out * dc.r, (q) => q.normal() * 0.3);
  const lora = r.float32(dc.rows * dc.out);
  const g = r.float32(dc.out, (q) => q.uniform(-2, 2));
  const bias = dc.bias ? r.float32(dc.out) : null;
  const wShape = dc.transposeW ? [dc.inF, dc.out] : [dc.out, dc.inF];
  // x·W_oiᵀ in float64
  const base = new Float64Array(dc.rows * dc.out);
  for (let i = 0; i < dc.rows; i++)
    for (let o = 0; o < dc.out; o++) {
      let acc = 0;
      for (let k = 0; k < dc.inF; k++) acc += x[i * dc.inF + k]! * w[dc.transposeW ? k * dc.out + o : o * dc.inF + k]!;
      base[i * dc.out + o] = acc;
    }
  return { x, w, a, b, lora, g, bias, wShape, base };
}

function matmulComposeCase(dc: DoraLinearCase): ConformanceCase {
  return {
    id: `${T}/matmulCompose.${dc.id}`,
    title: `matmulCompose: ${dc.title}`,
    async run(ctx) {
      const fused = ctx.backend.matmulCompose?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused matmulCompose (core uses matmul and doraCompose)');
      const v = doraLinearInputs(ctx, dc);
      const [xt, wt, lt, gt] = [
        ctx.tensor(v.x, [dc.rows, dc.inF]),
        ctx.tensor(v.w, v.wShape),
        ctx.tensor(v.lora, [dc.rows, dc.out]),
        ctx.tensor(v.g, [dc.out]),
      ];
      const bt = v.bias ? ctx.tensor(v.bias, [dc.out]) : null;
      const res = fused(xt, wt, lt, gt, dc.scale, bt, { transposeW: !!dc.transposeW });
      const base = await ctx.read(ctx.own(res.base, [dc.rows, dc.out], 'float32'));
      const y = await ctx.read(ctx.own(res.y, [dc.rows, dc.out], 'float32'));
      const out = dc.out;
      const want = Float32Array.from(v.base, (u, i) => (v.bias ? v.bias[i % out]! : 0) + v.g[i % out]! * (u + dc.scale * v.lora[i]!));
      assertClose(`matmulCompose.${dc.id} base vs float64`, base, Float32Array.from(v.base), ctx.closeOptions());
      assertClose(`matmulCompose.${dc.id} y vs float64`, y, want, ctx.closeOptions());
    },
  };
}

function matmulWeightNormCase(dc: DoraLinearCase): ConformanceCase {
  return {
    id: `${T}/matmulWeightNorm.${dc.id}`,
    title: `matmulWeightNorm: ${dc.title}`,
    async run(ctx) {
      const fused = ctx.backend.matmulWeightNorm?.bind(ctx.backend);
      if (!fused) return ctx.skip('the backend has no fused matmulWeightNorm (core uses matmul and weightNorm)');
      const v = doraLinearInputs(ctx, dc);
      const [xt, wt, at, bt] = [
        ctx.tensor(v.x, [dc.rows, dc.inF]),
        ctx.tensor(v.w, v.wShape),
        ctx.tensor(v.a, [dc.r, dc.inF]),
        ctx.tensor(v.b, [dc.out, dc.r]),
      ];
      const res = fused(xt, wt, at, bt, dc.scale, { transposeW: !!dc.transposeW });
      if (!res) return; // nothing to share for this shape on this backend: core runs the kernels apart
      const base = await ctx.read(ctx.own(res.base, [dc.rows, dc.out], 'float32'));
      const norm = await ctx.read(ctx.own(res.norm, [dc.out], 'float32'));
      assertClose(`matmulWeightNorm.${dc.id} base vs float64`, base, Float32Array.from(v.base), ctx.closeOptions());
      const host = weightNormHost(v.w, v.a, v.b, dc.out, dc.inF, dc.r, dc.scale, !!dc.transposeW);
      assertClose(`matmulWeightNorm.${dc.id} norm vs float64`, norm, Float32Array.from(host), {
        tolerance: { rtol: ctx.tolerance.rtol, atol: 0 },
      });
    },
  };
}

// ---------------------------------------------------------------- conv3d

interface Conv3dCase {
  readonly id: string;
  readonly x: readonly number[];
  readonly w: readonly number[];
  readonly p: Conv3dParams;
  readonly seed: number;
}

const CONV3D_CASES: readonly Conv3dCase[] = [
  {
    id: 'strided',
    x: [2, 4, 5, 6, 5],
    w: [6, 2, 3, 2, 3],
    p: { stride: [2, 1, 2], padding: [1, 0, 1], dilation: [1, 2, 1], groups: 2 },
    seed: 940,
  },
  {
    id: 'plain',
    x: [1, 3, 4, 4, 4],
    w: [5, 3, 2, 2, 2],
    p: { stride: [1, 1, 1], padding: [0, 0, 0], dilation: [1, 1, 1], groups: 1 },
    seed: 941,
  },
];

/** The optional conv3d kernels (all three or none) against float64; core's composite runs where they are absent. */
function conv3dCases(cc: Conv3dCase): ConformanceCase[] {
  const shapes = `x ${JSON.stringify(cc.x)}, w ${JSON.stringify(cc.w)}`;
  const inputs = (ctx: CaseContext) => {
    const b = ctx.backend;
    if (!b.conv3d || !b.conv3dBackpropInput || !b.conv3dBackpropFilter) {
      return ctx.skip('the backend has no conv3d kernels (core builds conv3d from conv2d kernels)');
    }
    const r = ctx.random(cc.seed);
    const yShape = convOutputShape(cc.x, cc.w, cc.p);
    return { b, x: r.float32(sizeOf(cc.x)), w: r.float32(sizeOf(cc.w)), dy: r.float32(sizeOf(yShape)), yShape };
  };
  return [
    {
      id: `${T}/conv3d.${cc.id}.forward`,
      title: `conv3d ${cc.id}: ${shapes}`,
      async run(ctx) {
        const { b, x, w, yShape } = inputs(ctx);
        const host = convHost(x, cc.x, w, cc.w, cc.p);
        const y = b.conv3d!(ctx.tensor(x, cc.x), ctx.tensor(w, cc.w), cc.p, yShape);
        await ctx.expectClose('conv3d', ctx.own(y, yShape, 'float32'), host.value, { magnitude: host.magnitude });
      },
    },
    {
      id: `${T}/conv3d.${cc.id}.input-grad`,
      title: `conv3dBackpropInput ${cc.id}: ${shapes}`,
      async run(ctx) {
        const { b, w, dy, yShape } = inputs(ctx);
        const host = convInputGradHost(dy, w, cc.w, cc.x, cc.p);
        const dx = b.conv3dBackpropInput!(ctx.tensor(dy, yShape), ctx.tensor(w, cc.w), cc.p, cc.x);
        await ctx.expectClose('dx', ctx.own(dx, cc.x, 'float32'), host.value, { magnitude: host.magnitude });
      },
    },
    {
      id: `${T}/conv3d.${cc.id}.filter-grad`,
      title: `conv3dBackpropFilter ${cc.id}: ${shapes}`,
      async run(ctx) {
        const { b, x, dy, yShape } = inputs(ctx);
        const host = convFilterGradHost(x, cc.x, dy, cc.w, cc.p);
        const dw = b.conv3dBackpropFilter!(ctx.tensor(x, cc.x), ctx.tensor(dy, yShape), cc.p, cc.w);
        await ctx.expectClose('dw', ctx.own(dw, cc.w, 'float32'), host.value, { magnitude: host.magnitude });
      },
    },
  ];
}

export const fusedTier: ConformanceTier = {
  id: T,
  title: 'fused kernels against their composites and float64',
  cases: [
    ...WEIGHT_NORM_CASES.map(weightNormCase),
    ...DORA_COMPOSE_CASES.map(doraComposeCase),
    ...WRITE_SLICE_CASES.map(writeSliceCase),
    ...RMS_NORM_CASES.map(rmsNormCase),
    ...ROTARY_CASES.map(rotaryCase),
    ...UPLOAD_DTYPES.map(beginUploadCase),
    ...DORA_LINEAR_CASES.map(matmulComposeCase),
    ...DORA_LINEAR_CASES.map(matmulWeightNormCase),
    ...CONV3D_CASES.flatMap(conv3dCases),
  ],
};
