/**
 * The narrow-weight kernels of the Backend contract (docs/narrow-weights.md): x·Wᵀ and dY·W, the embedding
 * gather, the DoRA weight norm and dequantization with W stored bf16/f16 or packed nf4/fp4/int8, widened
 * in registers (`wgsl/weights.ts`) and never stored as float32.
 *
 * Dense bf16/f16 W takes the ordinary kernels (which widen it while loading) and their split-tensor forms.
 * Packed W takes the row-streaming GEMV and vec4 tiled matmul (`matmul.ts`), the weight-norm programs,
 * and, for shapes those do not cover (K or N not a multiple of 4), one thread per output here.
 */
import {
  DTypeError,
  type QuantizedInfo,
  QuantizationError,
  SUPPORTED_BLOCKSIZES,
  type WeightInfo,
  type WeightNormOptions,
} from '@dorajs/core';
import type { GpuBuffer } from '../buffer-pool.js';
import type { GpuTensor, KernelContext } from '../context.js';
import { memoProgram, type Program } from '../runtime.js';
import { grid } from '../shapes.js';
import { describeSplit, isSplit, type RowPart, rowParts, type SplitTensor } from '../split.js';
import { bindInput, bindOutput, ELEMENTWISE_WORKGROUP as WG, linearMain, storageType } from '../wgsl/common.js';
import { bindWeight, codecKey, DENSE_WEIGHT_DTYPES, type WeightCodec, weightDecoder } from '../wgsl/weights.js';
import type { TensorArg } from './elementwise.js';
import { gather, gatherRow, slice } from './layout.js';
import { matmul, matmulQuantized, type QuantizedB } from './matmul.js';
import { gatherSplit, joinRows, matmulSplit, releaseAny, sliceSplit, weightNormSplit } from './split.js';
import { weightNorm } from './weight-norm.js';

/** A weight operand: its storage (logical shape [rows, cols]) and, when packed, its format and scales. */
export interface NarrowArg {
  readonly w: TensorArg;
  readonly q: QuantizedB | null;
  /** Names the weight in errors. */
  readonly name: string;
  /**
   * A packed W whose data is split over buffers by rows (`split.ts`): `w.t` is then the SplitTensor, `data` its
   * shape as stored ([rows, bytes per row]) and `part` the single-buffer argument of one part (its scales
   * sliced to its rows or blocks; copies go to `temps`).
   */
  readonly split?: {
    readonly data: TensorArg;
    part(ctx: KernelContext, p: GpuTensor, start: number, rows: number, temps: GpuTensor[]): NarrowArg;
  };
}

/**
 * Checks a weight operand and resolves it. A packed weight of the wrong length, block size or quant type
 * is refused with a `QuantizationError` naming it (core validates on the host too; this guards the GPU
 * from reading past a buffer), before anything is recorded.
 */
export function narrowArg(w: WeightInfo<GpuTensor>, op: string): NarrowArg {
  if (!('format' in w)) {
    const name = `webgpu ${op}: W [${w.shape.join(', ')}] ${w.dtype}`;
    if (!DENSE_WEIGHT_DTYPES.has(w.dtype)) throw new DTypeError(`${name}: a weight must be float32, bfloat16, float16 or packed`);
    if (w.data.released) throw new DTypeError(`${name}: used after release`);
    return { w: { t: w.data, shape: w.shape }, q: null, name };
  }
  const q = w as QuantizedInfo<GpuTensor>;
  const name = `webgpu ${op}: ${String(q.format)} W [${q.shape.join(', ')}]`;
  const fail = (message: string): never => {
    throw new QuantizationError(message, name);
  };
  if (q.format !== 'nf4' && q.format !== 'fp4' && q.format !== 'int8')
    fail(`quant type '${String(q.format)}' is not supported (nf4, fp4 or int8)`);
  const [rows, cols] = q.shape;
  if (q.shape.length !== 2 || !(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0)) {
    fail(`shape [${q.shape.join(', ')}] is not a 2-D weight`);
  }
  const n = rows * cols;
  const data = q.data.data;
  const scales = q.scales.data;
  if (data.released || scales.released) fail('used after release');
  const expect = (what: string, got: number, want: number) => {
    if (got !== want) fail(`${what} has ${got} elements, expected ${want}`);
  };
  if (q.format === 'int8') {
    if (data.dtype !== 'int8') fail(`int8 data must be stored int8, got ${data.dtype}`);
    expect('int8 data', data.size, n);
    expect('SCB', scales.size, rows);
  } else {
    if (!SUPPORTED_BLOCKSIZES.includes(q.blocksize))
      fail(`block size ${q.blocksize} is not supported (one of ${SUPPORTED_BLOCKSIZES.join(', ')})`);
    if (data.dtype !== 'uint8') fail(`packed ${q.format} data must be stored uint8, got ${data.dtype}`);
    expect(`packed ${q.format} data`, data.size, Math.ceil(n / 2));
    expect('absmax', scales.size, Math.ceil(n / q.blocksize));
  }
  if (scales.dtype !== 'float32') fail(`scales must be float32, got ${scales.dtype}`);
  const codec: WeightCodec = { format: q.format, blocksize: q.format === 'int8' ? 0 : q.blocksize };
  if (!isSplit(data)) {
    if (isSplit(scales)) fail(`scales ${describeSplit(scales, [scales.size])} are split but the data is not`);
    return { w: { t: data, shape: q.shape }, q: { codec, scales: scales.buf }, name };
  }
  // Split data: by rows of [rows, bytes per row] (core uploads 4-bit data of even rows that way).
  const rowBytes = q.format === 'int8' ? cols : cols / 2;
  if (!Number.isInteger(rowBytes) || data.size !== rows * rowBytes)
    fail(`packed data ${describeSplit(data, [data.size])} is split but its rows are not whole bytes`);
  const bs = codec.blocksize;
  const part = (ctx: KernelContext, p: GpuTensor, start: number, n: number, temps: GpuTensor[]): NarrowArg => {
    // The part's scales: SCB rows, or the blocks of its elements (which must begin and end on a block).
    const [s0, s1] = q.format === 'int8' ? [start, start + n] : [(start * cols) / bs, Math.ceil(((start + n) * cols) / bs)];
    if (bs > 0 && (!Number.isInteger(s0) || (start + n < rows && ((start + n) * cols) % bs !== 0))) {
      fail(`a buffer of the split data begins or ends inside a block of ${bs} (rows ${start}..${start + n} of ${cols})`);
    }
    let sc: GpuTensor = scales;
    if (isSplit(scales) || s0 > 0 || s1 < scales.size) {
      const whole = { t: scales, shape: [scales.size] };
      sc = isSplit(scales) ? sliceSplit(ctx, whole, [s0], [s1 - s0]) : slice(ctx, whole, [s0], [s1 - s0]);
      if (isSplit(sc)) fail(`the scales of rows ${start}..${start + n} do not fit one buffer`);
      temps.push(sc);
    }
    return { w: { t: p, shape: [n, cols] }, q: { codec, scales: sc.buf }, name };
  };
  // q.scales is never bound for split data: every kernel goes through `split.part`.
  return {
    w: { t: data, shape: q.shape },
    q: { codec, scales: null as unknown as GpuBuffer },
    name,
    split: { data: { t: data, shape: [rows, rowBytes] }, part },
  };
}

/** The parts of a split packed W as rows of it, each with its single-buffer argument (copies go to `temps`). */
function packedParts(ctx: KernelContext, w: NarrowArg, op: string, temps: GpuTensor[]): { p: RowPart; arg: NarrowArg }[] {
  const split = w.split!;
  return rowParts(split.data.t as SplitTensor, split.data.shape, op).map((p) => ({ p, arg: split.part(ctx, p.t, p.start, p.rows, temps) }));
}

// ---- matmul

/** y = x·Wᵀ (transposeW; W [N, K]) or dY·W (W [N, K]); one thread per output (shapes the fast programs skip). */
function narrowMatmulProgram(codec: WeightCodec, xType: string, transposeW: boolean): Program {
  const key = `narrow-matmul:${codecKey(codec)}:${xType}:${transposeW ? 'T' : 'N'}`;
  return memoProgram(key, () => {
    const [wBindings] = bindWeight(codec, 3, false);
    const wIndex = transposeW ? 'j * P.wcols + p' : 'p * P.wcols + j';
    return {
      key,
      name: `matmul narrow ${codecKey(codec)}${transposeW ? ' (Wᵀ)' : ''}`,
      uniforms: {
        scalars: [
          ['n', 'u32'],
          ['outCols', 'u32'],
          ['inner', 'u32'],
          ['wcols', 'u32'],
        ],
        dims: 0,
      },
      outputs: 1,
      inputs: 3,
      source: () => `${bindOutput(1, 'Y', 'f32')}
${bindInput(2, 'X', storageType(xType as 'float32'))}
${wBindings}
${weightDecoder(codec, false, 'P.wcols')}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let m = index / P.outCols;
  let j = index % P.outCols;
  var s = 0.0;
  for (var p = 0u; p < P.inner; p++) { s = fma(X[m * P.inner + p], W_at(${wIndex}), s); }
  Y[index] = s;`,
)}`,
    };
  });
}

export function matmulNarrow(ctx: KernelContext, x: TensorArg, w: NarrowArg, transposeW: boolean, outShape: readonly number[]): GpuTensor {
  const options = { transposeB: transposeW };
  if (!w.q) {
    if (isSplit(x.t) || isSplit(w.w.t)) return matmulSplit(ctx, x, w.w, options, outShape, (a, b, o, s) => matmul(ctx, a, b, o, s));
    return matmul(ctx, x, w.w, options, outShape);
  }
  const [rows, cols] = w.w.shape as [number, number];
  const inner = transposeW ? cols : rows;
  if (x.shape.length !== 2 || x.shape[1] !== inner || x.t.dtype !== 'float32' || isSplit(x.t)) {
    throw new DTypeError(`${w.name}: x must be float32 [M, ${inner}], got ${x.t.dtype} [${x.shape.join(', ')}]`);
  }
  if (w.split) {
    // Per part of rows, as for dense split W: column blocks of x·Wᵀ, or partial sums of dY·W.
    const split = w.split;
    const temps: GpuTensor[] = [];
    const partOf = new Map(packedParts(ctx, w, 'matmulNarrow', temps).map(({ p, arg }) => [p.t, arg]));
    const y = matmulSplit(ctx, x, split.data, options, outShape, (xa, wp, _o, shape) =>
      matmulNarrow(ctx, xa, partOf.get(wp.t)!, transposeW, shape),
    );
    for (const t of temps) releaseAny(ctx, t);
    return y;
  }
  const fast = matmulQuantized(ctx, x, w.w, w.q, options, outShape);
  if (fast) return fast;
  const M = x.shape[0]!;
  const outCols = transposeW ? rows : cols;
  const n = M * outCols;
  const out = ctx.alloc('float32', n);
  ctx.rt.dispatch({
    program: narrowMatmulProgram(w.q.codec, x.t.dtype, transposeW),
    outputs: [out.buf],
    inputs: [x.t.buf, w.w.t.buf, w.q.scales],
    scalars: { n, outCols, inner, wcols: cols },
    workgroups: grid(Math.ceil(n / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}

// ---- gather and dequantize

function gatherProgram(codec: WeightCodec, idxType: string): Program {
  const key = `narrow-gather:${codecKey(codec)}:${idxType}`;
  return memoProgram(key, () => ({
    key,
    name: `gather narrow ${codecKey(codec)}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['start', 'u32'],
        ['rows', 'u32'],
        ['cols', 'u32'],
        ['first', 'u32'],
        ['total', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 3,
    source: () => `${bindOutput(1, 'out', 'f32')}
${bindInput(2, 'idx', storageType(idxType as 'int32'))}
${bindWeight(codec, 3, false)[0]}
${weightDecoder(codec, false, 'P.cols')}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
${gatherRow(idxType as 'int32')}
  // Rows of W's other buffers are left to their dispatch; the first zeroes rows out of range.
  if (r < i32(P.start) || r >= i32(P.start + P.rows)) {
    if (P.first == 1u && (r < 0 || u32(r) >= P.total)) { out[index] = 0.0; }
    return;
  }
  out[index] = W_at((u32(r) - P.start) * P.cols + col);`,
)}`,
  }));
}

/** Rows of W, float32 [indices.size, cols]; rows out of range read as zeros (a GPU cannot throw). */
export function gatherNarrow(ctx: KernelContext, table: NarrowArg, indices: TensorArg): GpuTensor {
  if (!table.q) {
    if (isSplit(table.w.t)) return gatherSplit(ctx, table.w, indices);
    return gather(ctx, table.w, indices);
  }
  if (isSplit(indices.t)) throw new DTypeError(`${table.name}: indices larger than one buffer`);
  const [rows, cols] = table.w.shape as [number, number];
  const n = indices.t.size * cols;
  const out = ctx.alloc('float32', n);
  // One dispatch per part of a split table, each writing the rows it holds (the first zeroes rows out of range).
  const temps: GpuTensor[] = [];
  const parts = table.split
    ? packedParts(ctx, table, 'gatherNarrow', temps).map(({ p, arg }) => ({ arg, start: p.start }))
    : [{ arg: table, start: 0 }];
  parts.forEach(({ arg, start }, i) => {
    ctx.rt.dispatch({
      program: gatherProgram(table.q!.codec, indices.t.dtype),
      outputs: [out.buf],
      inputs: [indices.t.buf, arg.w.t.buf, arg.q!.scales],
      scalars: { n, start, rows: arg.w.shape[0]!, cols, first: i === 0 ? 1 : 0, total: rows },
      workgroups: grid(Math.ceil(n / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
    });
  });
  for (const t of temps) releaseAny(ctx, t);
  return out;
}

function dequantizeProgram(codec: WeightCodec): Program {
  const key = `dequantize:${codecKey(codec)}`;
  return memoProgram(key, () => ({
    key,
    name: `dequantize ${codecKey(codec)}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['cols', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'out', 'f32')}
${bindWeight(codec, 2, false)[0]}
${weightDecoder(codec, false, 'P.cols')}
${linearMain(WG, '  if (index >= P.n) { return; }\n  out[index] = W_at(index);')}`,
  }));
}

/** W widened to float32 [rows, cols] (bitsandbytes' dequantize_4bit / int8_vectorwise_dequant). */
export function dequantize(ctx: KernelContext, w: NarrowArg): GpuTensor {
  if (!w.q) throw new DTypeError(`${w.name}: dequantize takes a packed weight`);
  if (w.split) {
    const temps: GpuTensor[] = [];
    const cols = w.w.shape[1]!;
    const pieces = packedParts(ctx, w, 'dequantize', temps).map(({ p, arg }) => ({ t: dequantize(ctx, arg), shape: [p.rows, cols] }));
    const y = joinRows(ctx, pieces, 'float32', w.w.shape);
    for (const t of temps) releaseAny(ctx, t);
    return y;
  }
  const [rows, cols] = w.w.shape as [number, number];
  const n = rows * cols;
  const out = ctx.alloc('float32', n);
  ctx.rt.dispatch({
    program: dequantizeProgram(w.q.codec),
    outputs: [out.buf],
    inputs: [w.w.t.buf, w.q.scales],
    scalars: { n, cols },
    workgroups: grid(Math.ceil(n / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}

// ---- weight norm

/** ‖W + s·B·A‖ per output feature with a narrow W. */
export function weightNormNarrow(
  ctx: KernelContext,
  w: NarrowArg,
  a: TensorArg,
  b: TensorArg,
  scale: number,
  options: WeightNormOptions,
): GpuTensor {
  if (!w.q) return weightNormSplit(ctx, w.w, a, b, scale, options, (p, q, r, s, o) => weightNorm(ctx, p, q, r, s, o));
  for (const t of [a, b]) if (isSplit(t.t)) throw new DTypeError(`${w.name}: adapter ${describeSplit(t.t, t.shape)} in weightNorm`);
  if (w.split) {
    const split = w.split;
    const temps: GpuTensor[] = [];
    const partOf = new Map(packedParts(ctx, w, 'weightNormNarrow', temps).map(({ p, arg }) => [p.t, arg]));
    const n = weightNormSplit(
      ctx,
      { t: split.data.t, shape: w.w.shape },
      a,
      b,
      scale,
      options,
      (wp, ap, bp, s, o) => {
        const part = partOf.get(wp.t)!;
        return weightNorm(ctx, part.w, ap, bp, s, o, part.q);
      },
      split.data.shape,
    );
    for (const t of temps) releaseAny(ctx, t);
    return n;
  }
  return weightNorm(ctx, w.w, a, b, scale, options, w.q);
}
