/**
 * Batched matmul, a family of programs chosen by shape:
 * - `tiled`: 16×16 threads, each owning a TM×TN register block of a (16·TM)×(16·TN) output tile (128×128
 *   for large shapes); double-buffered operand tiles in workgroup memory; vec4 loads and stores when the
 *   contiguous dimensions are multiples of 4 (a scalar, bounds-checked program otherwise); K split across
 *   workgroups (and the slices added by a second dispatch) when there are too few output tiles to fill a GPU;
 * - `gemv`: M = 1 (decoding): x·Wᵀ streams W's rows (`rows.ts`); x·W keeps a column per thread;
 * - `smallK`: K ≤ 32 (LoRA's B·(A·x)): one thread per 4 outputs, operands read straight from global memory.
 * Leading (batch) axes broadcast; B may be stored bf16 or f16 (two per u32) and is widened while loading.
 * A packed quantized B (nf4/fp4/int8, `wgsl/weights.ts`) takes the row-streaming and vec4 tiled programs
 * (`matmulQuantized`); the shapes they do not cover go to `narrow.ts`'s program.
 *
 * The tiled and row-streaming programs take an optional epilogue, y' = bias + g ⊙ (y + s·lora): core asks
 * for it explicitly through `matmulCompose` (a DoRA Linear's base matmul and compose in one dispatch); a
 * GEMV joins the DoRA weight norm through `matmulWeightNorm` (`weight-norm.ts`).
 */
import { DTypeError, type MatMulOptions, ShapeError } from '@dorajs/core';
import type { GpuBuffer } from '../buffer-pool.js';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { grid, MAX_RANK, padTo } from '../shapes.js';
import { ELEMENTWISE_WORKGROUP as WG } from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';
import { GEMV_LANES, gemvProgram, gemvRows } from './matmul/gemv.js';
import { resolveShape } from './matmul/operands.js';
import { smallKProgram, smallKRows } from './matmul/small-k.js';
import { splitReduceProgram } from './matmul/split-reduce.js';
import { type Epilogue, tiledProgram, tileShape } from './matmul/tiled.js';
import { chooseSplits, chooseTile, forcedRows, gemvRowsPerWorkgroup } from './matmul/tuning.js';
import { matmulVariantFor } from './matmul/variant.js';
import { doraCompose } from './dora-compose.js';
import { rowsProgram, rowsWorkgroup } from './rows.js';
import { DENSE, DENSE_WEIGHT_DTYPES, type WeightCodec } from '../wgsl/weights.js';

export { chooseMatmulVariant } from './matmul/variant.js';
export { forcedRows } from './matmul/tuning.js';

/** The compose epilogue y' = bias + g ⊙ (y + s·lora) a matmul may apply to its result (all float32). */
export interface ComposeArgs {
  readonly lora: GpuBuffer;
  readonly g: GpuBuffer;
  readonly bias: GpuBuffer | null;
  readonly scale: number;
  readonly y: GpuTensor;
}

/** A matmul ready to be recorded, possibly with the compose epilogue folded in. */
export interface MatmulPlan {
  readonly out: GpuTensor;
  /** Whether `emit` accepts a compose epilogue. */
  readonly composable: boolean;
  /** Set for the row-streaming GEMV x·Wᵀ (which a weight norm over the same W can join). */
  readonly rows?: {
    readonly x: GpuBuffer;
    readonly w: GpuTensor;
    /** A packed W's scales (null for dense W). */
    readonly scales: GpuBuffer | null;
    readonly N: number;
    readonly K: number;
    readonly batch: number;
  };
  emit(compose: ComposeArgs | null): void;
}

function composeInputs(c: ComposeArgs): GpuBuffer[] {
  return c.bias ? [c.lora, c.g, c.bias] : [c.lora, c.g];
}

function epilogueOf(c: ComposeArgs | null): Epilogue {
  return c ? (c.bias ? 'composeBias' : 'compose') : 'none';
}

/** A packed quantized B: its format and float32 scales (absmax per block, or SCB per row). */
export interface QuantizedB {
  readonly codec: WeightCodec;
  readonly scales: GpuBuffer;
}

/** The plan, or null for a quantized B in a shape only `narrow.ts`'s program covers. */
export function planMatmul(
  ctx: KernelContext,
  a: TensorArg,
  b: TensorArg,
  options: MatMulOptions,
  outShape: readonly number[],
  bq: QuantizedB | null,
): MatmulPlan | GpuTensor | null {
  const s = resolveShape(a, b, options, outShape);
  const transA = options.transposeA ?? false;
  const transB = options.transposeB ?? false;
  const aType = a.t.dtype;
  const bType = b.t.dtype;
  for (const [name, t] of [
    ['a', aType],
    ['b', bType],
  ] as const) {
    if (t === 'int32') throw new DTypeError(`webgpu matmul: operand ${name} is int32; cast to float32 first`);
  }
  if (s.batch > ctx.rt.limits.maxComputeWorkgroupsPerDimension) {
    throw new ShapeError(`webgpu matmul: batch of ${s.batch} exceeds the device's workgroup grid`);
  }
  // How the programs bind B: float16 as f16 where the device has shader-f16 (widened in registers either way).
  const bBound = ctx.bound(bType);
  const codec = bq?.codec ?? DENSE(bBound);
  const bInputs = bq ? [b.t.buf, bq.scales] : [b.t.buf];
  let variant = matmulVariantFor(ctx, s.M, s.K);
  // A packed B has the row-streaming GEMV (at any M: one pass over W per row of x) and the vec4 tiled program.
  if (bq && variant === 'smallK') variant = s.M <= ROWS_MAX_M ? 'gemv' : 'tiled';
  if (bq && variant === 'tiled' && s.M <= ROWS_MAX_M && transB) variant = 'gemv';
  const rowsOk =
    transB &&
    s.K % 4 === 0 &&
    aType === 'float32' &&
    (bq !== null || DENSE_WEIGHT_DTYPES.has(bType)) &&
    rowsWorkgroup(ctx.rt.limits, { rows: 16, gemv: true, norm: false, subgroups: ctx.options.subgroups }) > 0;
  const vec =
    aType === 'float32' &&
    (bq !== null || DENSE_WEIGHT_DTYPES.has(bType)) &&
    s.N % 4 === 0 &&
    (transA ? s.M : s.K) % 4 === 0 &&
    (transB ? s.K : s.N) % 4 === 0;
  // The tiled program's blocking for this device. Where none fits its workgroup memory: small-K, and for a
  // packed B narrow.ts's program (as for the shapes the vec4 program cannot read).
  const cfg = variant === 'tiled' ? chooseTile(ctx, s.M, s.N, transA, transB) : null;
  if (variant === 'tiled' && !cfg) variant = 'smallK';
  if (bq && !(variant === 'gemv' ? rowsOk : variant === 'tiled' && vec)) return null;
  const out = ctx.alloc('float32', s.batch * s.M * s.N);
  if (s.batch === 0 || s.M === 0 || s.N === 0) return out;
  const scalars = { M: s.M, N: s.N, K: s.K, batchRank: s.batchRank, kChunk: s.K, splits: 1, batch: s.batch, escale: 0 };
  const maxPerDim = ctx.rt.limits.maxComputeWorkgroupsPerDimension;
  const io = { outputs: [out.buf], inputs: [a.t.buf, ...bInputs] };
  const simple = (program: Program, workgroups: [number, number, number]): MatmulPlan => ({
    out,
    composable: false,
    emit: () => ctx.rt.dispatch({ program, ...io, scalars, dims: s.dims, workgroups }),
  });

  if (variant === 'gemv') {
    if (rowsOk) {
      const R = forcedRows(ctx) ?? gemvRowsPerWorkgroup(s.N);
      // M > 1 (a packed W only): one GEMV per row of x, as batch entries of the grid.
      const batch = s.batch * s.M;
      const dims = s.M === 1 ? s.dims : rowBatchDims(s.M, s.K);
      const [x, y] = grid(Math.ceil(s.N / R), maxPerDim);
      return {
        out,
        composable: true,
        rows: { x: a.t.buf, w: b.t, scales: bq?.scales ?? null, N: s.N, K: s.K, batch },
        emit: (c) => {
          const program = rowsProgram({
            rows: R,
            workgroup: rowsWorkgroup(ctx.rt.limits, { rows: R, gemv: true, norm: false, subgroups: ctx.options.subgroups }),
            gemv: true,
            rank: 0,
            w: codec,
            bType,
            compose: c !== null,
            composeBias: !!c?.bias,
            subgroups: ctx.options.subgroups,
          });
          ctx.rt.dispatch({
            program,
            outputs: c ? [out.buf, c.y.buf] : [out.buf],
            inputs: c ? [a.t.buf, ...bInputs, ...composeInputs(c)] : [a.t.buf, ...bInputs],
            scalars: { N: s.N, K: s.K, r: 0, batchRank: s.M === 1 ? s.batchRank : 1, scale: 0, escale: c?.scale ?? 0 },
            dims,
            workgroups: [x, y, batch],
          });
        },
      };
    }
    const rows = gemvRows(ctx.maxInvocations);
    const program = gemvProgram(aType, bBound, transB, ctx.options.subgroups, rows);
    const [x, y] = grid(Math.ceil(s.N / (transB ? rows : GEMV_LANES)), maxPerDim);
    return simple(program, [x, y, s.batch]);
  }
  if (variant === 'smallK') {
    const rows = smallKRows(ctx.maxInvocations);
    return simple(smallKProgram(aType, bBound, transA, transB, rows), [Math.ceil(s.N / 64), Math.ceil(s.M / rows), s.batch]);
  }

  const { BM, BN } = tileShape(cfg!);
  const tiles = Math.ceil(s.M / BM) * Math.ceil(s.N / BN) * s.batch;
  const { splits, kChunk } = chooseSplits(ctx, tiles, s.K, cfg!.BK, s.batch);
  const workgroups: [number, number, number] = [Math.ceil(s.N / BN), Math.ceil(s.M / BM), s.batch * (splits > 1 ? splits : 1)];
  const key = { cfg: cfg!, aType, bType: bBound, b: codec, transA, transB, vec };
  if (splits <= 1) {
    return {
      out,
      composable: true,
      emit: (c) =>
        ctx.rt.dispatch({
          program: tiledProgram({ ...key, split: false, epilogue: epilogueOf(c) }),
          outputs: c ? [out.buf, c.y.buf] : [out.buf],
          inputs: c ? [a.t.buf, ...bInputs, ...composeInputs(c)] : [a.t.buf, ...bInputs],
          scalars: { ...scalars, escale: c?.scale ?? 0 },
          dims: s.dims,
          workgroups,
        }),
    };
  }
  const total = s.batch * s.M * s.N;
  return {
    out,
    composable: true,
    emit: (c) => {
      const part = ctx.scratch(splits * total * 4);
      ctx.rt.dispatch({
        program: tiledProgram({ ...key, split: true, epilogue: 'none' }),
        outputs: [part],
        inputs: [a.t.buf, ...bInputs],
        scalars: { ...scalars, kChunk, splits },
        dims: s.dims,
        workgroups,
      });
      const n = vec ? total / 4 : total;
      ctx.rt.dispatch({
        program: splitReduceProgram(vec, epilogueOf(c)),
        outputs: c ? [out.buf, c.y.buf] : [out.buf],
        inputs: c ? [part, ...composeInputs(c)] : [part],
        scalars: { n, splits, cols: s.N, escale: c?.scale ?? 0 },
        workgroups: grid(Math.ceil(n / WG), maxPerDim),
      });
      ctx.releaseScratch(part);
    },
  };
}

/** Rows of x handled as GEMVs over a packed W (above this, the tiled program). */
const ROWS_MAX_M = 8;

/** dims for M GEMVs as a batch of M: x's rows K apart, W shared. */
function rowBatchDims(M: number, K: number): number[] {
  return [M, ...padTo([], MAX_RANK - 1, 1), K, ...padTo([], MAX_RANK - 1), ...padTo([], MAX_RANK)];
}

function record(plan: MatmulPlan | GpuTensor): GpuTensor {
  if (!('emit' in plan)) return plan;
  plan.emit(null);
  return plan.out;
}

export function matmul(ctx: KernelContext, a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): GpuTensor {
  return record(planMatmul(ctx, a, b, options, outShape, null)!);
}

/**
 * x·Wᵀ (transposeB) or x·W with a packed W ([rows, cols] as `b.shape`, its bytes in `b.t`), widened in
 * registers; null when the shape needs `narrow.ts`'s program (K or N not a multiple of 4, non-float32 x).
 */
export function matmulQuantized(
  ctx: KernelContext,
  a: TensorArg,
  b: TensorArg,
  q: QuantizedB,
  options: MatMulOptions,
  outShape: readonly number[],
): GpuTensor | null {
  const plan = planMatmul(ctx, a, b, options, outShape, q);
  return plan && record(plan);
}

/**
 * A DoRA Linear's base = x·Wᵀ (x·W with transposeW) with y = bias + g ⊙ (base + s·lora) in the matmul's
 * epilogue: one dispatch (two for split-K) instead of a matmul and a compose. Without fusion, or for a
 * program without the epilogue, the matmul and `doraCompose` run one after the other.
 */
export function matmulCompose(
  ctx: KernelContext,
  x: TensorArg,
  w: TensorArg,
  lora: TensorArg,
  g: TensorArg,
  scale: number,
  bias: TensorArg | null,
  transposeW: boolean,
): { base: GpuTensor; y: GpuTensor } {
  const outShape = [x.shape[0]!, transposeW ? w.shape[1]! : w.shape[0]!];
  const plan = planMatmul(ctx, x, w, { transposeB: !transposeW }, outShape, null)!;
  const allF32 = [lora, g, ...(bias ? [bias] : [])].every((t) => t.t.dtype === 'float32');
  if ('emit' in plan && plan.composable && ctx.options.fuse && allF32) {
    const y = ctx.alloc('float32', plan.out.size);
    plan.emit({ lora: lora.t.buf, g: g.t.buf, bias: bias?.t.buf ?? null, scale, y });
    ctx.rt.stats.fused++;
    return { base: plan.out, y };
  }
  const base = 'emit' in plan ? (plan.emit(null), plan.out) : plan;
  return { base, y: doraCompose(ctx, { t: base, shape: outShape }, lora, g, scale, bias) };
}
