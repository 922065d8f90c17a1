/**
 * Fused DoRA weight norm: n[o] = ‖W[o,:] + s·(B·A)[o,:]‖ in one pass over W, float32 accumulation.
 *
 * Two programs. `rows` (`rows.ts`; Linear layout, in % 4 == 0, float32 A, r ≤ 128) streams W's rows in
 * one dispatch; it is used when a GEMV over the same W is still deferred, so both come from one pass over
 * W (DoRA's uncached decode step). `tiles`, below, serves every layout and is the default otherwise:
 * B·A is never stored: it is formed tile by tile in registers like a matmul with K = r (the operand tiles
 * sit in workgroup memory), W's tile is added in the epilogue and squared into running sums. A workgroup
 * owns 64 output features and one slice of the input dimension; the slices' partial sums (splits × out
 * floats) are added and square-rooted by a second, tiny dispatch. That split keeps enough workgroups in
 * flight when `out` is small relative to the GPU.
 *
 * Layouts: Linear and Conv2d ([out, in·kh·kw]) read W row-major with the input dimension contiguous;
 * `transposeW` (Conv1D, Embedding) reads W as [in, out] with the output dimension contiguous. In both,
 * a workgroup of 16×TY threads covers a 64×64 tile of W: each thread 4 contiguous W elements (one vec4, or
 * two u32 of packed bf16) in each of 64/TY rows (4 rows with 256 invocations; 8 on a compatibility-mode
 * device's 128).
 */
import { DoraError, DTypeError, ShapeError, type DType, type WeightNormOptions } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import { memoProgram, type Program } from '../runtime.js';
import { grid } from '../shapes.js';
import { bindInput, bindOutput, loadF32, storageType } from '../wgsl/common.js';
import { bindWeight, codecKey, DENSE, DENSE_WEIGHT_DTYPES, type WeightCodec, weightDecoder } from '../wgsl/weights.js';
import type { TensorArg } from './elementwise.js';
import { forcedRows, type MatmulPlan, planMatmul, type QuantizedB } from './matmul.js';
import { matmulVariantFor } from './matmul/variant.js';
import type { NarrowArg } from './narrow.js';
import { ROWS_MAX_RANK, rowsProgram, rowsWorkgroup } from './rows.js';
import { isSplit } from '../split.js';
import { threadRows } from './matmul/tuning.js';

/** Width of a tile along both W dimensions, and the rank chunk held in workgroup memory. */
const TILE = 64;
const RK = 16;
/** Workgroups to aim for: enough to fill a large GPU several times over. */
const TARGET_WORKGROUPS = 1024;

interface NormKey {
  readonly w: WeightCodec;
  readonly aType: DType;
  readonly bType: DType;
  readonly transposeW: boolean;
  readonly vec: boolean;
  /** r ≤ RK: the fixed operand's tile is loaded once. */
  readonly oneChunk: boolean;
  /** Rows of 16 threads (`threadRows`): 16, or 8 on a device with 128 invocations per workgroup. */
  readonly TY: number;
}

function normProgram(k: NormKey): Program {
  const key = `weight-norm:${codecKey(k.w)}:${k.aType}:${k.bType}:${k.transposeW ? 'T' : 'N'}:${k.vec ? 'vec' : 'scalar'}:${k.oneChunk ? 'r1' : 'rk'}${k.TY === 16 ? '' : `:${k.TY}`}`;
  return memoProgram(key, () => buildNormProgram(key, k));
}

function buildNormProgram(key: string, { w, aType, bType, transposeW, vec, oneChunk, TY }: NormKey): Program {
  // 16 × TY threads: thread (tx, ty) owns 4 fast columns (tx·4…) and S slow rows (ty·S…) of the 64×64 tile.
  const THREADS = 16 * TY;
  const S = TILE / TY;
  // "slow" indexes W's rows, "fast" its contiguous columns. Normal: slow = o, fast = i. Transposed: swapped.
  // W is read through `wgsl/weights.ts` (any storage format, widened in registers); its row length is fastDim.
  const [wBindings, wCount] = bindWeight(w, 2, vec);
  const wLoad = vec
    ? 'let w4 = W_at4(slow * P.fastDim + fast);'
    : `var w4 = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) { if (fast + c < P.fastDim) { w4[c] = W_at(slow * P.fastDim + fast + c); } }`;
  // B is [out, r] (contiguous along k); A is [r, in] (contiguous along i).
  const loadB = (dst: string, p0: string) => `
    for (var q = 0u; q < ${(TILE * RK) / THREADS}u; q++) {
      let idx = lid + q * ${THREADS}u;
      let p = idx / ${RK}u;
      let k = idx % ${RK}u;
      var v = 0.0;
      if (${p0} + p < P.outDim && k0 + k < P.r) { v = ${loadF32('Bm', bType, `(${p0} + p) * P.r + k0 + k`)}; }
      ${dst}[k * ${TILE / 4}u + p / 4u][p % 4u] = v;
    }`;
  const loadA = (dst: string, p0: string) => `
    for (var q = 0u; q < ${(TILE * RK) / THREADS}u; q++) {
      let idx = lid + q * ${THREADS}u;
      let k = idx / ${TILE}u;
      let p = idx % ${TILE}u;
      var v = 0.0;
      if (${p0} + p < P.inDim && k0 + k < P.r) { v = ${loadF32('Am', aType, `(k0 + k) * P.inDim + ${p0} + p`)}; }
      ${dst}[k * ${TILE / 4}u + p / 4u][p % 4u] = v;
    }`;
  // Normal: slow operand = B (rows o, fixed per workgroup), fast = A (columns i, per step).
  // Transposed: slow operand = A (rows i, per step), fast = B (columns o, fixed per workgroup).
  const slowShared = 'Ss';
  const fastShared = 'Fs';
  const loadFixed = transposeW ? loadB(fastShared, 'tile0') : loadB(slowShared, 'tile0');
  const loadStep = transposeW ? loadA(slowShared, 'step0') : loadA(fastShared, 'step0');
  const slowBase = transposeW ? 'step0' : 'tile0';
  const fastBase = transposeW ? 'tile0' : 'step0';
  const epilogue = transposeW
    ? `        let v = w4 + P.scale * acc[j];
        sq4 = fma(v, v, sq4);`
    : `        let v = w4 + P.scale * acc[j];
        sq[j] += dot(v, v);`;
  return {
    key,
    name: `weightNorm${transposeW ? ' (transposed W)' : ''}`,
    uniforms: {
      scalars: [
        ['outDim', 'u32'],
        ['inDim', 'u32'],
        ['fastDim', 'u32'],
        ['slowDim', 'u32'],
        ['r', 'u32'],
        ['chunk', 'u32'],
        ['scale', 'f32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 2 + wCount,
    source: () => `${bindOutput(1, 'partial', 'f32')}
${wBindings}
${bindInput(2 + wCount, 'Am', storageType(aType))}
${bindInput(3 + wCount, 'Bm', storageType(bType))}
${weightDecoder(w, vec, 'P.fastDim')}
var<workgroup> Ss: array<vec4<f32>, ${(RK * TILE) / 4}>;
var<workgroup> Fs: array<vec4<f32>, ${(RK * TILE) / 4}>;
var<workgroup> red: array<f32, ${TILE * 16}>;
@compute @workgroup_size(16, ${TY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid3.x;
  let ty = lid3.y;
  let tile0 = wid.x * ${TILE}u;
  let split = wid.y;
  let begin = split * P.chunk;
  let end = min(begin + P.chunk, P.inDim);
  var sq: array<f32, ${S}>;
  var sq4 = vec4<f32>(0.0);
  ${oneChunk ? `let k0 = 0u;\n${loadFixed}` : ''}
  for (var step0 = begin; step0 < end; step0 += ${TILE}u) {
    var acc: array<vec4<f32>, ${S}>;
    for (var k0 = 0u; k0 < P.r; k0 += ${RK}u) {
      ${oneChunk ? '' : loadFixed}
      ${loadStep}
      workgroupBarrier();
      for (var k = 0u; k < ${RK}u; k++) {
        let f4 = ${fastShared}[k * ${TILE / 4}u + tx];
${Array.from({ length: S / 4 }, (_, h) => {
  const lines = [`        let s${h} = ${slowShared}[k * ${TILE / 4}u + ty * ${S / 4}u + ${h}u];`];
  for (let c = 0; c < 4; c++) lines.push(`        acc[${h * 4 + c}] = fma(vec4<f32>(s${h}[${c}]), f4, acc[${h * 4 + c}]);`);
  return lines.join('\n');
}).join('\n')}
      }
      workgroupBarrier();
    }
    let fast = ${fastBase} + tx * 4u;
    for (var j = 0u; j < ${S}u; j++) {
      let slow = ${slowBase} + ty * ${S}u + j;
      if (slow < P.slowDim && fast < P.fastDim${transposeW ? ' && slow < end' : ''}) {
        ${wLoad}
${epilogue}
      }
    }
  }
  // Sum the per-thread squares of each output feature across the threads that share it.
${
  transposeW
    ? `  for (var c = 0u; c < 4u; c++) { red[ty * ${TILE}u + tx * 4u + c] = sq4[c]; }
  workgroupBarrier();
  for (var f = lid; f < ${TILE}u; f += ${THREADS}u) {
    var t = 0.0;
    for (var y = 0u; y < ${TY}u; y++) { t += red[y * ${TILE}u + f]; }
    let o = tile0 + f;
    if (o < P.outDim) { partial[split * P.outDim + o] = t; }
  }`
    : `  for (var j = 0u; j < ${S}u; j++) { red[(ty * ${S}u + j) * 16u + tx] = sq[j]; }
  workgroupBarrier();
  for (var f = lid; f < ${TILE}u; f += ${THREADS}u) {
    var t = 0.0;
    for (var x = 0u; x < 16u; x++) { t += red[f * 16u + x]; }
    let o = tile0 + f;
    if (o < P.outDim) { partial[split * P.outDim + o] = t; }
  }`
}
}`,
  };
}

const finishProgram: Program = {
  key: 'weight-norm-finish',
  name: 'weightNorm finish',
  uniforms: {
    scalars: [
      ['outDim', 'u32'],
      ['splits', 'u32'],
    ],
    dims: 0,
  },
  outputs: 1,
  inputs: 1,
  source: () => `${bindOutput(1, 'norm', 'f32')}
${bindInput(2, 'partial', 'f32')}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * 64u;
  if (o >= P.outDim) { return; }
  var t = 0.0;
  for (var s = 0u; s < P.splits; s++) { t += partial[s * P.outDim + o]; }
  norm[o] = sqrt(t);
}`,
};

export function weightNorm(
  ctx: KernelContext,
  w: TensorArg,
  a: TensorArg,
  b: TensorArg,
  scale: number,
  options: WeightNormOptions,
  /** A packed W: `w.t` holds its bytes, `w.shape` its logical shape. */
  q: QuantizedB | null = null,
): GpuTensor {
  const transposeW = options.transposeW ?? false;
  if (w.shape.length < 2 || a.shape.length < 2 || b.shape.length < 2) {
    throw new ShapeError(
      `webgpu weightNorm: W [${w.shape.join(', ')}], A [${a.shape.join(', ')}], B [${b.shape.join(', ')}] must be 2-D (or Conv2d 4-D)`,
    );
  }
  // Conv2d weights [out, in, kh, kw] (A [r, in, kh, kw], B [out, r, 1, 1]) are the [out, in·kh·kw] case.
  const flat = (shape: readonly number[]) => [shape[0]!, shape.slice(1).reduce((p, d) => p * d, 1)] as const;
  const [w0, w1] = flat(w.shape);
  const [r, inA] = flat(a.shape);
  const [outB, rB] = flat(b.shape);
  const [outDim, inDim] = transposeW ? [w1, w0] : [w0, w1];
  if (inA !== inDim || outB !== outDim || rB !== r || (transposeW && w.shape.length !== 2)) {
    throw new ShapeError(
      `webgpu weightNorm: W [${w.shape.join(', ')}]${transposeW ? ' (transposed)' : ''}, A [${a.shape.join(', ')}], B [${b.shape.join(', ')}] disagree`,
    );
  }
  const wType = w.t.dtype;
  if (!q && !DENSE_WEIGHT_DTYPES.has(wType)) {
    throw new DTypeError(`webgpu weightNorm: W must be float32, bfloat16, float16 or packed, got ${wType}`);
  }
  const codec = q?.codec ?? DENSE(ctx.bound(wType));
  const wInputs = q ? [w.t.buf, q.scales] : [w.t.buf];
  if (useRows(ctx, transposeW, inDim, r, a.t.dtype)) return rowsNorm(ctx, w, q, a, b, scale, outDim, inDim, r);
  const TY = threadRows(ctx.rt.limits);
  if (TY === 0)
    throw new DoraError(`webgpu weightNorm: the device allows ${ctx.maxInvocations} invocations per workgroup (WebGPU guarantees 128)`);
  const fastDim = transposeW ? outDim : inDim;
  const slowDim = transposeW ? inDim : outDim;
  const vec = fastDim % 4 === 0;
  const tiles = Math.ceil(outDim / TILE);
  const steps = Math.ceil(inDim / TILE);
  const target = ctx.options.tuning.normWorkgroups || TARGET_WORKGROUPS;
  const splits = Math.max(1, Math.min(steps, Math.ceil(target / tiles)));
  const chunk = Math.ceil(steps / splits) * TILE;
  const usedSplits = Math.ceil(inDim / chunk) || 1;
  const partial = ctx.scratch(usedSplits * outDim * 4);
  const program = normProgram({ w: codec, aType: a.t.dtype, bType: b.t.dtype, transposeW, vec, oneChunk: r <= RK, TY });
  ctx.rt.dispatch({
    program,
    outputs: [partial],
    inputs: [...wInputs, a.t.buf, b.t.buf],
    scalars: { outDim, inDim, fastDim, slowDim, r, chunk, scale },
    workgroups: [tiles, usedSplits],
  });
  const out = ctx.alloc('float32', outDim);
  ctx.rt.dispatch({
    program: finishProgram,
    outputs: [out.buf],
    inputs: [partial],
    scalars: { outDim, splits: usedSplits },
    workgroups: grid(Math.ceil(outDim / 64), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  ctx.releaseScratch(partial);
  return out;
}

/**
 * `rows` unless forced to `tiles` or not applicable. On the H200 (2026-11-28, second run) rows with 16 rows
 * per workgroup measured best everywhere: fp32 4096² 0.031 ms (1.9× the read-once floor) vs 0.058 tiles and
 * 0.051 with 4 rows; fp32 14336×4096 0.090 ms (1.6×) vs 0.145 / 0.132; bf16 4096² 0.031 ms vs 0.166 tiles.
 */
function useRows(ctx: KernelContext, transposeW: boolean, inDim: number, r: number, aType: DType): boolean {
  const forced = ctx.options.weightNormVariant;
  const possible =
    !transposeW &&
    inDim % 4 === 0 &&
    aType === 'float32' &&
    r >= 1 &&
    r <= ROWS_MAX_RANK &&
    rowsWorkgroup(ctx.rt.limits, { rows: forcedRows(ctx) ?? NORM_ROWS, gemv: true, norm: true, subgroups: ctx.options.subgroups }) > 0;
  return possible && forced !== 'tiles';
}

/** Rows per workgroup of the norm: 16 reads each A panel once per 16 rows and measured best (see useRows). */
const NORM_ROWS = 16;

/** The `rows` program, sharing W's read with the GEMV x·Wᵀ over the same W when one is given. */
function rowsNorm(
  ctx: KernelContext,
  w: TensorArg,
  q: QuantizedB | null,
  a: TensorArg,
  b: TensorArg,
  scale: number,
  outDim: number,
  inDim: number,
  r: number,
  rows: MatmulPlan | null = null,
): GpuTensor {
  const wInputs = q ? [w.t.buf, q.scales] : [w.t.buf];
  const out = ctx.alloc('float32', outDim);
  const R = forcedRows(ctx) ?? NORM_ROWS;
  const program = rowsProgram({
    rows: R,
    workgroup: rowsWorkgroup(ctx.rt.limits, { rows: R, gemv: rows !== null, norm: true, subgroups: ctx.options.subgroups }),
    gemv: rows !== null,
    rank: r,
    w: q?.codec ?? DENSE(ctx.bound(w.t.dtype)),
    bType: b.t.dtype,
    compose: false,
    composeBias: false,
    subgroups: ctx.options.subgroups,
  });
  const [x, y] = grid(Math.ceil(outDim / R), ctx.rt.limits.maxComputeWorkgroupsPerDimension);
  ctx.rt.dispatch({
    program,
    outputs: rows ? [rows.out.buf, out.buf] : [out.buf],
    inputs: rows ? [rows.rows!.x, ...wInputs, a.t.buf, b.t.buf] : [...wInputs, a.t.buf, b.t.buf],
    scalars: { N: outDim, K: inDim, r, batchRank: 0, scale, escale: 0 },
    dims: [],
    workgroups: [x, y, 1],
  });
  return out;
}

/**
 * A DoRA Linear's base GEMV x·Wᵀ (one token) and ‖W + s·B·A‖ from one read of W (the `rows` program);
 * null where that does not apply — several rows, W stored [in, out], a shape or device the rows program
 * does not serve, fusion off — and core then runs the matmul (with the compose epilogue) and the norm apart.
 */
export function matmulWeightNorm(
  ctx: KernelContext,
  x: TensorArg,
  w: NarrowArg,
  a: TensorArg,
  b: TensorArg,
  scale: number,
  transposeW: boolean,
): { base: GpuTensor; norm: GpuTensor } | null {
  const [outDim, inDim] = w.w.shape as [number, number];
  const r = a.shape[0]!;
  if (!ctx.options.fuse || transposeW || x.shape.length !== 2 || x.shape[0] !== 1 || x.t.dtype !== 'float32') return null;
  if (isSplit(x.t) || isSplit(w.w.t) || (!w.q && !DENSE_WEIGHT_DTYPES.has(w.w.t.dtype))) return null;
  if (matmulVariantFor(ctx, 1, inDim) !== 'gemv' || !useRows(ctx, false, inDim, r, a.t.dtype)) return null;
  // A packed W in a shape only narrow.ts's program covers: nothing to share.
  const plan = planMatmul(ctx, x, w.w, { transposeB: true }, [1, outDim], w.q);
  if (!plan) return null;
  if (!('emit' in plan)) return { base: plan, norm: weightNorm(ctx, w.w, a, b, scale, {}, w.q) };
  if (!plan.rows) {
    plan.emit(null);
    return { base: plan.out, norm: weightNorm(ctx, w.w, a, b, scale, {}, w.q) };
  }
  const norm = rowsNorm(ctx, w.w, w.q, a, b, scale, outDim, inDim, r, plan);
  ctx.rt.stats.fused++;
  return { base: plan.out, norm };
}
