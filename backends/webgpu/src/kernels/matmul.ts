/**
 * Batched matmul, a family of programs chosen by shape:
 * - `tiled`: 16×16 threads, each owning a TM×TN register block of a (16·TM)×(16·TN) output tile (128×128
 *   for large shapes); double-buffered operand tiles in workgroup memory; vec4 loads and stores when the
 *   contiguous dimensions are multiples of 4 (a scalar, bounds-checked program otherwise); K split across
 *   workgroups (and the slices added by a second dispatch) when there are too few output tiles to fill a GPU;
 * - `gemv`: M = 1 (decoding): x·Wᵀ streams W's rows (`rows.ts`); x·W keeps a column per thread;
 * - `smallK`: K ≤ 32 (LoRA's B·(A·x)): one thread per 4 outputs, operands read straight from global memory.
 * Leading (batch) axes broadcast; B may be stored bf16 (two per u32) and is widened while loading.
 *
 * The tiled and row-streaming programs take an optional epilogue, y' = bias + g ⊙ (y + s·lora): with fusion
 * on, `matmul` defers its dispatch (`GpuRuntime.defer`) so that a `doraCompose` over its result folds into
 * it, and a `weightNorm` over the same W joins a GEMV (see `dora-compose.ts`, `weight-norm.ts`).
 */
import { DTypeError, ShapeError, type DType, type MatMulOptions } from '@dorajs/core';
import type { GpuBuffer } from '../buffer-pool.js';
import type { GpuTensor, KernelContext, MatmulVariant } from '../context.js';
import { memoProgram, type PendingOp, type Program } from '../runtime.js';
import { broadcastStrides, grid, MAX_RANK, padTo, sizeOf } from '../shapes.js';
import {
  BATCH_OFFSETS,
  bindInput,
  bindOutput,
  DIMS_ACCESSOR,
  ELEMENTWISE_WORKGROUP as WG,
  linearMain,
  loadF32,
  storageType,
} from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';
import { rowsProgram } from './rows.js';

interface MatmulShape {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly batch: number;
  readonly dims: readonly number[];
  readonly batchRank: number;
}

const BATCH_SLOTS = MAX_RANK - 2;
/** The `dims` of a matmul without batch axes (the common case, kept off the per-call path). */
const NO_BATCH_DIMS: number[] = [...padTo([], MAX_RANK, 1), ...padTo([], 2 * MAX_RANK)];

function resolveShape(a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): MatmulShape {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2)
    throw new ShapeError(`webgpu matmul: operands need 2+ axes, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [am, ak] = options.transposeA ? [a.shape[ra - 1]!, a.shape[ra - 2]!] : [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const [bk, bn] = options.transposeB ? [b.shape[rb - 1]!, b.shape[rb - 2]!] : [b.shape[rb - 2]!, b.shape[rb - 1]!];
  const ro = outShape.length;
  if (ak !== bk || outShape[ro - 2] !== am || outShape[ro - 1] !== bn) {
    throw new ShapeError(
      `webgpu matmul: [${a.shape.join(', ')}]${options.transposeA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${options.transposeB ? 'ᵀ' : ''} does not give [${outShape.join(', ')}]`,
    );
  }
  if (ra === 2 && rb === 2) return { M: am, N: bn, K: ak, batch: 1, batchRank: 0, dims: NO_BATCH_DIMS };
  const outBatch = outShape.slice(0, -2);
  if (outBatch.length > BATCH_SLOTS) throw new ShapeError(`webgpu matmul: more than ${BATCH_SLOTS} batch axes in [${outShape.join(', ')}]`);
  const aStrides = broadcastStrides(a.shape.slice(0, -2), outBatch, 'matmul').map((s) => s * am * ak);
  const bStrides = broadcastStrides(b.shape.slice(0, -2), outBatch, 'matmul').map((s) => s * bk * bn);
  return {
    M: am,
    N: bn,
    K: ak,
    batch: sizeOf(outBatch),
    batchRank: outBatch.length,
    dims: [...padTo(outBatch, MAX_RANK, 1), ...padTo(aStrides, MAX_RANK), ...padTo(bStrides, MAX_RANK)],
  };
}

const UNIFORMS = {
  scalars: [
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['batchRank', 'u32'],
    ['kChunk', 'u32'],
    ['splits', 'u32'],
    ['batch', 'u32'],
    ['escale', 'f32'],
  ],
  dims: 3 * MAX_RANK,
} as const;

/** WGSL bindings of the scalar programs (C = A·B, operands in their storage types) and their batch offsets. */
function scalarOperands(aType: DType, bType: DType): string {
  return `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', 'f32')}
${bindInput(2, 'A', storageType(aType))}
${bindInput(3, 'B', storageType(bType))}`;
}

/** Scalar element accessors honouring transposition and dtype, for the bounds-checked and simple programs. */
function scalarAccessors(aType: DType, bType: DType, transA: boolean, transB: boolean): string {
  const ai = transA ? 'aBase + k * P.M + m' : 'aBase + m * P.K + k';
  const bi = transB ? 'bBase + n * P.K + k' : 'bBase + k * P.N + n';
  return `fn A_at(aBase: u32, m: u32, k: u32) -> f32 { return ${loadF32('A', aType, ai)}; }
fn B_at(bBase: u32, k: u32, n: u32) -> f32 { return ${loadF32('B', bType, bi)}; }`;
}

// ---- tiled

export interface TileConfig {
  readonly TM: number;
  readonly TN: number;
  readonly BK: number;
}

/** 128×128 tiles, 8×8 per thread: the most arithmetic per workgroup-memory read. */
const LARGE_TILE: TileConfig = { TM: 8, TN: 8, BK: 8 };
const SMALL_TILE: TileConfig = { TM: 4, TN: 4, BK: 16 };
/** Workgroups a matmul should keep in flight before K is split across workgroups (a large GPU, a few waves). */
const SPLIT_K_TARGET = 264;
const MAX_SPLITS = 16;

function widenBf16x4(w: string): string {
  return `vec4<f32>(bitcast<f32>(${w}.x << 16u), bitcast<f32>(${w}.x & 0xffff0000u), bitcast<f32>(${w}.y << 16u), bitcast<f32>(${w}.y & 0xffff0000u))`;
}

export type Epilogue = 'none' | 'compose' | 'composeBias';

interface TiledKey {
  readonly cfg: TileConfig;
  readonly aType: DType;
  readonly bType: DType;
  readonly transA: boolean;
  readonly transB: boolean;
  /** vec4 loads and stores (contiguous dimensions multiples of 4, float32 A, float32/bf16 B); else scalar. */
  readonly vec: boolean;
  /** Writes partial sums per K slice (reduced by `splitReduceProgram`). */
  readonly split: boolean;
  readonly epilogue: Epilogue;
}

/** Bytes of workgroup memory the tiled program needs (both buffers of both operand tiles). */
function tiledStorageBytes(cfg: TileConfig, transA: boolean, transB: boolean): number {
  const BM = 16 * cfg.TM;
  const BN = 16 * cfg.TN;
  return 2 * cfg.BK * (BM + (transA ? 0 : 4) + BN + (transB ? 4 : 0)) * 4;
}

/**
 * 16×16 threads, each computing a TM×TN block of a (16·TM)×(16·TN) tile as strided 4×4 sub-blocks (rows
 * ty·4 + 64·i, columns tx·4 + 64·j), so every workgroup-memory read is a conflict-free vec4. Operand tiles
 * are double-buffered in workgroup memory: the next K tile is loaded into registers while the current one
 * is multiplied, then stored into the other buffer, with one barrier per K tile. Operands contiguous along
 * K (A, and Bᵀ) are transposed while being stored, into rows padded by 4 floats so the scalar stores do
 * not collide on banks. Workgroups whose tile lies inside the matrix take branch-free loads and stores;
 * edge workgroups check bounds (one program, a workgroup-uniform branch).
 */
function tiledProgram(t: TiledKey): Program {
  const key = `matmul-tiled:${t.cfg.TM}x${t.cfg.TN}x${t.cfg.BK}:${t.aType}:${t.bType}:${t.transA ? 'T' : 'N'}${t.transB ? 'T' : 'N'}:${t.vec ? 'vec4' : 'scalar'}${t.split ? ':split' : ''}:${t.epilogue}`;
  return memoProgram(key, () => buildTiledProgram(t, key));
}

function buildTiledProgram(t: TiledKey, key: string): Program {
  const { cfg, aType, bType, transA, transB, vec, split, epilogue } = t;
  const { TM, TN, BK } = cfg;
  const BM = 16 * TM;
  const BN = 16 * TN;
  const aContigK = !transA;
  const bContigK = transB;
  const APAD = BM + (aContigK ? 4 : 0);
  const BPAD = BN + (bContigK ? 4 : 0);
  const perA = (BM * BK) / 4 / 256;
  const perB = (BN * BK) / 4 / 256;
  const bf16B = bType === 'bfloat16';
  const compose = epilogue !== 'none';

  // A thread's vec4 slot `idx` of an operand tile as (d, k): along K for K-contiguous operands, else along d.
  const slotCoords = (contigK: boolean, BD: number, pad: string): string =>
    contigK
      ? `${pad}let d = idx / ${BK / 4}u;\n${pad}let k = (idx % ${BK / 4}u) * 4u;`
      : `${pad}let k = idx / ${BD / 4}u;\n${pad}let d = (idx % ${BD / 4}u) * 4u;`;

  // Register loads of one K tile: `r${op}${p}` holds vec4 p of this thread's share.
  const loads = (op: 'A' | 'B', checked: boolean): string => {
    const contigK = op === 'A' ? aContigK : bContigK;
    const BD = op === 'A' ? BM : BN;
    const per = op === 'A' ? perA : perB;
    const outer = op === 'A' ? 'P.M' : 'P.N';
    const d0 = op === 'A' ? 'm0' : 'n0';
    const base = op === 'A' ? 'aBase' : 'bBase';
    const lines: string[] = [];
    for (let p = 0; p < per; p++) {
      const reg = `r${op}${p}`;
      lines.push(`      {
        let idx = lid + ${p * 256}u;`);
      lines.push(slotCoords(contigK, BD, '        '));
      const g = contigK ? `${base} + (${d0} + d) * P.K + k0 + k` : `${base} + (k0 + k) * ${outer} + ${d0} + d`;
      if (vec) {
        const raw = `${op}[(${g}) / 4u]`;
        const value = op === 'B' && bf16B ? widenBf16x4(raw) : raw;
        if (checked) {
          lines.push(`        ${reg} = vec4<f32>(0.0);
        if (${d0} + d < ${outer} && k0 + k < kEnd) { ${reg} = ${value}; }`);
        } else {
          lines.push(`        ${reg} = ${value};`);
        }
      } else {
        const at = (j: number) => {
          const [dd, kk] = contigK ? [`${d0} + d`, `k0 + k + ${j}u`] : [`${d0} + d + ${j}u`, `k0 + k`];
          const call = op === 'A' ? `A_at(aBase, ${dd}, ${kk})` : `B_at(bBase, ${kk}, ${dd})`;
          return `select(0.0, ${call}, ${dd} < ${outer} && ${kk} < kEnd)`;
        };
        lines.push(`        ${reg} = vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')});`);
      }
      lines.push('      }');
    }
    return lines.join('\n');
  };

  const stores = (op: 'A' | 'B', buf: number): string => {
    const contigK = op === 'A' ? aContigK : bContigK;
    const BD = op === 'A' ? BM : BN;
    const PAD = op === 'A' ? APAD : BPAD;
    const per = op === 'A' ? perA : perB;
    const arr = `${op}s${buf}`;
    const lines: string[] = [];
    for (let p = 0; p < per; p++) {
      const reg = `r${op}${p}`;
      lines.push(`    {
      let idx = lid + ${p * 256}u;`);
      lines.push(slotCoords(contigK, BD, '      '));
      if (contigK) {
        for (let j = 0; j < 4; j++) lines.push(`      ${arr}[(k + ${j}u) * ${PAD / 4}u + d / 4u][d % 4u] = ${reg}[${j}];`);
      } else {
        lines.push(`      ${arr}[k * ${PAD / 4}u + d / 4u] = ${reg};`);
      }
      lines.push('    }');
    }
    return lines.join('\n');
  };

  const compute = (buf: number): string => {
    const lines: string[] = [];
    for (let k = 0; k < BK; k++) {
      for (let c = 0; c < TM / 4; c++) lines.push(`    let a${k}_${c} = As${buf}[${k * (APAD / 4) + c * 16}u + ty];`);
      for (let c = 0; c < TN / 4; c++) lines.push(`    let b${k}_${c} = Bs${buf}[${k * (BPAD / 4) + c * 16}u + tx];`);
      for (let i = 0; i < TM; i++) {
        for (let c = 0; c < TN / 4; c++) {
          const a = `acc[${i * (TN / 4) + c}]`;
          lines.push(`    ${a} = fma(vec4<f32>(a${k}_${Math.floor(i / 4)}[${i % 4}]), b${k}_${c}, ${a});`);
        }
      }
    }
    return `    {\n${lines.join('\n')}\n    }`;
  };

  const tileLoads = `    if (interior) {
${loads('A', false)}
${loads('B', false)}
    } else {
${loads('A', true)}
${loads('B', true)}
    }`;

  // One K step of the double-buffered loop: prefetch the next tile into registers, multiply out of
  // buffer `buf`, then store the prefetched tile into the other buffer. The loop body is two of these.
  const pingPong = (buf: number): string => `      let more${buf} = t + 1u < nt;
      k0 += ${BK}u;
      if (more${buf}) {
${tileLoads}
      }
${compute(buf)}
      if (!more${buf}) { break; }
${stores('A', 1 - buf)}
${stores('B', 1 - buf)}
      workgroupBarrier();
      t += 1u;`;

  const storeLines = (checked: boolean): string => {
    const lines: string[] = [];
    for (let i = 0; i < TM; i++) {
      const m = `m0 + ${Math.floor(i / 4) * 64 + (i % 4)}u + ty * 4u`;
      for (let c = 0; c < TN / 4; c++) {
        const n = `n0 + ${c * 64}u + tx * 4u`;
        const v = `acc[${i * (TN / 4) + c}]`;
        if (vec) {
          const at = `(cBase + (${m}) * P.N + ${n}) / 4u`;
          const body = compose
            ? `{ let ci = ${at}; C[ci] = ${v}; Y[ci] = ${epilogue === 'composeBias' ? `BIAS[(${n}) / 4u] + ` : ''}G[(${n}) / 4u] * fma(vec4<f32>(P.escale), LORA[ci], ${v}); }`
            : `C[${at}] = ${v};`;
          lines.push(checked ? `    if (${m} < P.M && ${n} < P.N) ${body.startsWith('{') ? body : `{ ${body} }`}` : `    ${body}`);
        } else {
          lines.push(`    {
      let m = ${m};
      let n = ${n};
      if (m < P.M) {
        let row = cBase + m * P.N;
        for (var j = 0u; j < 4u; j++) {
          if (n + j < P.N) {
            C[row + n + j] = ${v}[j];${
              compose
                ? `
            Y[row + n + j] = ${epilogue === 'composeBias' ? 'BIAS[n + j] + ' : ''}G[n + j] * fma(P.escale, LORA[row + n + j], ${v}[j]);`
                : ''
            }
          }
        }
      }
    }`);
        }
      }
    }
    return lines.join('\n');
  };

  const f4 = vec ? 'vec4<f32>' : 'f32';
  const bindings = [bindOutput(1, 'C', f4)];
  let binding = 2;
  if (compose) bindings.push(bindOutput(binding++, 'Y', f4));
  bindings.push(bindInput(binding++, 'A', vec ? 'vec4<f32>' : storageType(aType)));
  bindings.push(bindInput(binding++, 'B', vec ? (bf16B ? 'vec2<u32>' : 'vec4<f32>') : storageType(bType)));
  if (compose) {
    bindings.push(bindInput(binding++, 'LORA', f4));
    bindings.push(bindInput(binding++, 'G', f4));
    if (epilogue === 'composeBias') bindings.push(bindInput(binding++, 'BIAS', f4));
  }
  const regDecls = [
    ...Array.from({ length: perA }, (_, p) => `  var rA${p}: vec4<f32>;`),
    ...Array.from({ length: perB }, (_, p) => `  var rB${p}: vec4<f32>;`),
  ].join('\n');

  return {
    key,
    name: `matmul tiled ${BM}x${BN}${split ? ' split-K' : ''}${compose ? ' + compose' : ''}`,
    uniforms: UNIFORMS,
    outputs: compose ? 2 : 1,
    inputs: compose ? (epilogue === 'composeBias' ? 5 : 4) : 2,
    source: () => `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindings.join('\n')}
${vec ? '' : scalarAccessors(aType, bType, transA, transB)}
var<workgroup> As0: array<vec4<f32>, ${(BK * APAD) / 4}>;
var<workgroup> As1: array<vec4<f32>, ${(BK * APAD) / 4}>;
var<workgroup> Bs0: array<vec4<f32>, ${(BK * BPAD) / 4}>;
var<workgroup> Bs1: array<vec4<f32>, ${(BK * BPAD) / 4}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid3.x;
  let ty = lid3.y;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let split = wid.z % P.splits;
  let bz = wid.z / P.splits;
  let offs = batch_offsets(bz);
  let aBase = offs.x;
  let bBase = offs.y;
  let cBase = (split * P.batch + bz) * P.M * P.N;
  let kBegin = split * P.kChunk;
  let kEnd = min(kBegin + P.kChunk, P.K);
  let kLen = select(0u, kEnd - kBegin, kEnd > kBegin);
  let nt = (kLen + ${BK - 1}u) / ${BK}u;
  let interior = m0 + ${BM}u <= P.M && n0 + ${BN}u <= P.N && kLen % ${BK}u == 0u;
  var acc: array<vec4<f32>, ${(TM * TN) / 4}>;
${regDecls}
  if (nt > 0u) {
    var k0 = kBegin;
${tileLoads}
${stores('A', 0)}
${stores('B', 0)}
    workgroupBarrier();
    var t = 0u;
    loop {
${pingPong(0)}
${pingPong(1)}
    }
  }
  if (interior) {
${storeLines(false)}
  } else {
${storeLines(true)}
  }
}`,
  };
}

/** Adds the K slices' partial products (and applies the compose epilogue, if any). */
function splitReduceProgram(vec: boolean, epilogue: Epilogue): Program {
  return memoProgram(`matmul-split-reduce:${vec ? 'vec4' : 'scalar'}:${epilogue}`, () => buildSplitReduceProgram(vec, epilogue));
}

function buildSplitReduceProgram(vec: boolean, epilogue: Epilogue): Program {
  const f4 = vec ? 'vec4<f32>' : 'f32';
  const compose = epilogue !== 'none';
  let binding = 1;
  const bindings = [bindOutput(binding++, 'C', f4)];
  if (compose) bindings.push(bindOutput(binding++, 'Y', f4));
  bindings.push(bindInput(binding++, 'PART', f4));
  if (compose) {
    bindings.push(bindInput(binding++, 'LORA', f4));
    bindings.push(bindInput(binding++, 'G', f4));
    if (epilogue === 'composeBias') bindings.push(bindInput(binding++, 'BIAS', f4));
  }
  const col = vec ? '((i * 4u) % P.cols) / 4u' : 'i % P.cols';
  return {
    key: `matmul-split-reduce:${vec ? 'vec4' : 'scalar'}:${epilogue}`,
    name: `matmul split-K reduce${compose ? ' + compose' : ''}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['splits', 'u32'],
        ['cols', 'u32'],
        ['escale', 'f32'],
      ],
      dims: 0,
    },
    outputs: compose ? 2 : 1,
    inputs: compose ? (epilogue === 'composeBias' ? 4 : 3) : 1,
    source: () => `${bindings.join('\n')}
${linearMain(
  WG,
  `  let i = index;
  if (i >= P.n) { return; }
  var s = PART[i];
  for (var p = 1u; p < P.splits; p++) { s += PART[p * P.n + i]; }
  C[i] = s;${
    compose
      ? `
  Y[i] = ${epilogue === 'composeBias' ? `BIAS[${col}] + ` : ''}G[${col}] * fma(${f4}(P.escale), LORA[i], s);`
      : ''
  }`,
)}`,
  };
}

// ---- gemv (M = 1)

/**
 * Rows per workgroup of the row-streaming GEMV: 4 (fastest of 4, 8, 16 at 4096×4096 on the H200), fewer
 * when N is small so that there are still ~256 workgroups (x·Aᵀ has N = r rows).
 */
function gemvRowsPerWorkgroup(N: number): number {
  return Math.min(4, Math.max(1, 2 ** Math.floor(Math.log2(Math.max(1, N / 256)))));
}

const GEMV_ROWS = 4;
const GEMV_LANES = 64;

function gemvProgram(aType: DType, bType: DType, transB: boolean, subgroups: boolean): Program {
  return memoProgram(`matmul-gemv:${aType}:${bType}:${transB ? 'T' : 'N'}${subgroups && transB ? ':sg' : ''}`, () =>
    buildGemvProgram(aType, bType, transB, subgroups),
  );
}

function buildGemvProgram(aType: DType, bType: DType, transB: boolean, subgroups: boolean): Program {
  // transB (B is [N, K], the Linear weight layout): each output is a contiguous dot product reduced by
  // GEMV_LANES threads. Otherwise (B is [K, N]) each thread owns an output column, so reads of a row of B
  // are coalesced, and the workgroup's GEMV_ROWS rows split K.
  const useSubgroups = subgroups && transB;
  const key = `matmul-gemv:${aType}:${bType}:${transB ? 'T' : 'N'}${useSubgroups ? ':sg' : ''}`;
  if (transB) {
    return {
      key,
      name: 'matmul gemv (Bᵀ)',
      uniforms: UNIFORMS,
      outputs: 1,
      inputs: 2,
      source: () => `${useSubgroups ? 'enable subgroups;' : ''}
${scalarOperands(aType, bType)}
var<workgroup> partial: array<f32, ${GEMV_ROWS * GEMV_LANES}>;
@compute @workgroup_size(${GEMV_LANES}, ${GEMV_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lane = lid3.x;
  let n = (wid.x + wid.y * nwg.x) * ${GEMV_ROWS}u + lid3.y;
  let offs = batch_offsets(wid.z);
  var s = 0.0;
  if (n < P.N) {
    let brow = offs.y + n * P.K;
    for (var k = lane; k < P.K; k += ${GEMV_LANES}u) {
      s = fma(${loadF32('A', aType, 'offs.x + k')}, ${loadF32('B', bType, 'brow + k')}, s);
    }
  }
  let slot = lid3.y * ${GEMV_LANES}u + lane;
  partial[slot] = s;
  workgroupBarrier();
  for (var w = ${GEMV_LANES / 2}u; w > 0u; w >>= 1u) {
    if (lane < w) { partial[slot] += partial[slot + w]; }
    workgroupBarrier();
  }
  if (lane == 0u && n < P.N) { C[wid.z * P.N + n] = partial[slot]; }
}`,
    };
  }
  return {
    key,
    name: 'matmul gemv',
    uniforms: UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${scalarOperands(aType, bType)}
var<workgroup> partial: array<f32, ${GEMV_ROWS * GEMV_LANES}>;
@compute @workgroup_size(${GEMV_LANES}, ${GEMV_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let n = (wid.x + wid.y * nwg.x) * ${GEMV_LANES}u + lid3.x;
  let offs = batch_offsets(wid.z);
  var s = 0.0;
  if (n < P.N) {
    for (var k = lid3.y; k < P.K; k += ${GEMV_ROWS}u) {
      s = fma(${loadF32('A', aType, 'offs.x + k')}, ${loadF32('B', bType, 'offs.y + k * P.N + n')}, s);
    }
  }
  partial[lid3.y * ${GEMV_LANES}u + lid3.x] = s;
  workgroupBarrier();
  if (lid3.y == 0u && n < P.N) {
    var t = 0.0;
    for (var r = 0u; r < ${GEMV_ROWS}u; r++) { t += partial[r * ${GEMV_LANES}u + lid3.x]; }
    C[wid.z * P.N + n] = t;
  }
}`,
  };
}

// ---- small K

function smallKProgram(aType: DType, bType: DType, transA: boolean, transB: boolean): Program {
  return memoProgram(`matmul-smallk:${aType}:${bType}:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`, () =>
    buildSmallKProgram(aType, bType, transA, transB),
  );
}

function buildSmallKProgram(aType: DType, bType: DType, transA: boolean, transB: boolean): Program {
  return {
    key: `matmul-smallk:${aType}:${bType}:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`,
    name: 'matmul small-K',
    uniforms: UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${scalarOperands(aType, bType)}
${scalarAccessors(aType, bType, transA, transB)}
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * 4u;
  let m = gid.y;
  if (m >= P.M || n0 >= P.N) { return; }
  let offs = batch_offsets(gid.z);
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < P.K; k++) {
    let a = A_at(offs.x, m, k);
    let b = vec4<f32>(B_at(offs.y, k, n0), B_at(offs.y, k, min(n0 + 1u, P.N - 1u)),
                      B_at(offs.y, k, min(n0 + 2u, P.N - 1u)), B_at(offs.y, k, min(n0 + 3u, P.N - 1u)));
    acc = fma(vec4<f32>(a), b, acc);
  }
  let row = gid.z * P.M * P.N + m * P.N;
  for (var j = 0u; j < 4u; j++) { if (n0 + j < P.N) { C[row + n0 + j] = acc[j]; } }
}`,
  };
}

// ---- selection

export function chooseMatmulVariant(M: number, K: number): Exclude<MatmulVariant, 'auto'> {
  if (K <= 32) return 'smallK';
  if (M === 1) return 'gemv';
  return 'tiled';
}

const parsedTiles = new Map<string, TileConfig | undefined>();

/** A `TMxTNxBK` blocking (e.g. 8x8x8; TM, TN ∈ {4, 8}), from `setTuning` or `DORA_WEBGPU_TILE`. */
export function parseTile(spec: string | undefined): TileConfig | undefined {
  if (!spec) return undefined;
  if (parsedTiles.has(spec)) return parsedTiles.get(spec);
  const m = /^(4|8)x(4|8)x(4|8|16|32)$/.exec(spec);
  let cfg: TileConfig | undefined;
  if (m) {
    cfg = { TM: Number(m[1]), TN: Number(m[2]), BK: Number(m[3]) };
    // Every thread must load at least one vec4 of each operand tile.
    if (16 * cfg.TM * cfg.BK < 1024 || 16 * cfg.TN * cfg.BK < 1024) cfg = undefined;
  }
  parsedTiles.set(spec, cfg);
  return cfg;
}

/** K slices forced by `setTuning` or `DORA_WEBGPU_SPLITK=n` (1: none). */
function forcedSplits(ctx: KernelContext): number | undefined {
  const n = ctx.options.tuning.splitK;
  return n !== undefined && Number.isInteger(n) && n >= 1 ? n : undefined;
}

/** Rows per workgroup of the row-streaming programs forced by `setTuning` or `DORA_WEBGPU_ROWS`. */
export function forcedRows(ctx: KernelContext): number | undefined {
  const n = ctx.options.tuning.rows;
  return n !== undefined && [1, 2, 4, 8, 16].includes(n) ? n : undefined;
}

/** The compose epilogue y' = bias + g ⊙ (y + s·lora) a matmul may apply to its result (all float32). */
export interface ComposeArgs {
  readonly lora: GpuBuffer;
  readonly g: GpuBuffer;
  readonly bias: GpuBuffer | null;
  readonly scale: number;
  readonly y: GpuTensor;
}

/** A matmul ready to be recorded, possibly with the compose epilogue folded in (see `defer`). */
export interface MatmulPlan {
  readonly out: GpuTensor;
  /** Whether `emit` accepts a compose epilogue. */
  readonly composable: boolean;
  /** Set for the row-streaming GEMV x·Wᵀ (which a weight norm over the same W can join). */
  readonly rows?: { readonly x: GpuBuffer; readonly w: GpuTensor; readonly N: number; readonly K: number; readonly batch: number };
  emit(compose: ComposeArgs | null): void;
}

export interface PendingMatmul extends PendingOp {
  readonly kind: 'matmul';
  readonly plan: MatmulPlan;
}

export function isPendingMatmul(op: PendingOp): op is PendingMatmul {
  return op.kind === 'matmul';
}

function composeInputs(c: ComposeArgs): GpuBuffer[] {
  return c.bias ? [c.lora, c.g, c.bias] : [c.lora, c.g];
}

function epilogueOf(c: ComposeArgs | null): Epilogue {
  return c ? (c.bias ? 'composeBias' : 'compose') : 'none';
}

function planMatmul(
  ctx: KernelContext,
  a: TensorArg,
  b: TensorArg,
  options: MatMulOptions,
  outShape: readonly number[],
): MatmulPlan | GpuTensor {
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
  const out = ctx.alloc('float32', s.batch * s.M * s.N);
  if (s.batch === 0 || s.M === 0 || s.N === 0) return out;
  if (s.batch > ctx.rt.limits.maxComputeWorkgroupsPerDimension) {
    throw new ShapeError(`webgpu matmul: batch of ${s.batch} exceeds the device's workgroup grid`);
  }
  let variant: MatmulVariant = ctx.options.matmulVariant;
  if (variant === 'auto') variant = chooseMatmulVariant(s.M, s.K);
  if (variant === 'gemv' && s.M !== 1) variant = 'smallK';
  if (variant === 'tiled' && ctx.maxInvocations < 256) variant = 'smallK';
  const scalars = { M: s.M, N: s.N, K: s.K, batchRank: s.batchRank, kChunk: s.K, splits: 1, batch: s.batch, escale: 0 };
  const maxPerDim = ctx.rt.limits.maxComputeWorkgroupsPerDimension;
  const io = { outputs: [out.buf], inputs: [a.t.buf, b.t.buf] };
  const simple = (program: Program, workgroups: [number, number, number]): MatmulPlan => ({
    out,
    composable: false,
    emit: () => ctx.rt.dispatch({ program, ...io, scalars, dims: s.dims, workgroups }),
  });

  if (variant === 'gemv') {
    const rowsOk = transB && s.K % 4 === 0 && aType === 'float32' && (bType === 'float32' || bType === 'bfloat16');
    if (rowsOk) {
      const R = forcedRows(ctx) ?? gemvRowsPerWorkgroup(s.N);
      const wType = bType as 'float32' | 'bfloat16';
      const [x, y] = grid(Math.ceil(s.N / R), maxPerDim);
      return {
        out,
        composable: true,
        rows: { x: a.t.buf, w: b.t, N: s.N, K: s.K, batch: s.batch },
        emit: (c) => {
          const program = rowsProgram({
            rows: R,
            gemv: true,
            rank: 0,
            wType,
            bType,
            compose: c !== null,
            composeBias: !!c?.bias,
            subgroups: ctx.options.subgroups,
          });
          ctx.rt.dispatch({
            program,
            outputs: c ? [out.buf, c.y.buf] : [out.buf],
            inputs: c ? [a.t.buf, b.t.buf, ...composeInputs(c)] : [a.t.buf, b.t.buf],
            scalars: { N: s.N, K: s.K, r: 0, batchRank: s.batchRank, scale: 0, escale: c?.scale ?? 0 },
            dims: s.dims,
            workgroups: [x, y, s.batch],
          });
        },
      };
    }
    const program = gemvProgram(aType, bType, transB, ctx.options.subgroups);
    const [x, y] = grid(Math.ceil(s.N / (transB ? GEMV_ROWS : GEMV_LANES)), maxPerDim);
    return simple(program, [x, y, s.batch]);
  }
  if (variant === 'smallK') {
    return simple(smallKProgram(aType, bType, transA, transB), [Math.ceil(s.N / 64), Math.ceil(s.M / 16), s.batch]);
  }

  let cfg = parseTile(ctx.options.tuning.tile) ?? (s.M >= 512 && s.N >= 512 ? LARGE_TILE : SMALL_TILE);
  if (tiledStorageBytes(cfg, transA, transB) > ctx.maxWorkgroupStorage) cfg = { ...cfg, BK: 8 };
  if (tiledStorageBytes(cfg, transA, transB) > ctx.maxWorkgroupStorage) cfg = SMALL_TILE;
  const BM = 16 * cfg.TM;
  const BN = 16 * cfg.TN;
  const vec =
    aType === 'float32' &&
    (bType === 'float32' || bType === 'bfloat16') &&
    s.N % 4 === 0 &&
    (transA ? s.M : s.K) % 4 === 0 &&
    (transB ? s.K : s.N) % 4 === 0;
  const tiles = Math.ceil(s.M / BM) * Math.ceil(s.N / BN) * s.batch;
  // Few output tiles (short M, e.g. a prompt of 64 tokens) leave most of a large GPU idle: split K instead.
  let splits =
    forcedSplits(ctx) ??
    (tiles < SPLIT_K_TARGET && s.K >= 1024 ? Math.min(MAX_SPLITS, Math.ceil(SPLIT_K_TARGET / tiles), Math.floor(s.K / 256)) : 1);
  const kChunk = Math.ceil(s.K / Math.max(1, splits) / cfg.BK) * cfg.BK;
  splits = Math.max(1, Math.ceil(s.K / kChunk));
  if (s.batch * splits > maxPerDim) splits = 1;
  const workgroups: [number, number, number] = [Math.ceil(s.N / BN), Math.ceil(s.M / BM), s.batch * (splits > 1 ? splits : 1)];
  const key = { cfg, aType, bType, transA, transB, vec };
  if (splits <= 1) {
    return {
      out,
      composable: true,
      emit: (c) =>
        ctx.rt.dispatch({
          program: tiledProgram({ ...key, split: false, epilogue: epilogueOf(c) }),
          outputs: c ? [out.buf, c.y.buf] : [out.buf],
          inputs: c ? [a.t.buf, b.t.buf, ...composeInputs(c)] : [a.t.buf, b.t.buf],
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
        inputs: [a.t.buf, b.t.buf],
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

export function matmul(ctx: KernelContext, a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): GpuTensor {
  const plan = planMatmul(ctx, a, b, options, outShape);
  if (!('emit' in plan)) return plan;
  if (ctx.options.fuse && (plan.composable || plan.rows)) {
    const op: PendingMatmul = { kind: 'matmul', plan, writes: [plan.out.buf], reads: [a.t.buf, b.t.buf], emit: () => plan.emit(null) };
    ctx.rt.defer(op);
  } else {
    plan.emit(null);
  }
  return plan.out;
}
