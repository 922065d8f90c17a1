/**
 * Batched matmul, a family of programs chosen by shape:
 * - `tiled`: 16×16 threads, each owning a TM×TN register block of a (16·TM)×(16·TN) output tile; operand
 *   tiles staged in workgroup memory; vec4 global loads when the shape is tile-aligned (a separate, bounds-
 *   checked program otherwise, so the aligned one carries no branches);
 * - `gemv`: M = 1 (decoding): a group of threads per output reduces a dot product, memory-bound by design;
 * - `smallK`: K ≤ 32 (LoRA's B·(A·x)): one thread per 4 outputs, operands read straight from global memory.
 * Leading (batch) axes broadcast; B may be stored bf16 (two per u32) and is widened while loading.
 */
import { DTypeError, ShapeError, type DType, type MatMulOptions } from '@dorajs/core';
import type { GpuTensor, KernelContext, MatmulVariant } from '../context.js';
import type { Program } from '../runtime.js';
import { broadcastStrides, grid, MAX_RANK, padTo, sizeOf } from '../shapes.js';
import { bindInput, bindOutput, DIMS_ACCESSOR, loadF32, storageType } from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';

interface MatmulShape {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly batch: number;
  readonly dims: number[];
  readonly batchRank: number;
}

const BATCH_SLOTS = MAX_RANK - 2;

function resolveShape(a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): MatmulShape {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new ShapeError(`webgpu matmul: operands need 2+ axes, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [am, ak] = options.transposeA ? [a.shape[ra - 1]!, a.shape[ra - 2]!] : [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const [bk, bn] = options.transposeB ? [b.shape[rb - 1]!, b.shape[rb - 2]!] : [b.shape[rb - 2]!, b.shape[rb - 1]!];
  const ro = outShape.length;
  if (ak !== bk || outShape[ro - 2] !== am || outShape[ro - 1] !== bn) {
    throw new ShapeError(
      `webgpu matmul: [${a.shape.join(', ')}]${options.transposeA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${options.transposeB ? 'ᵀ' : ''} does not give [${outShape.join(', ')}]`,
    );
  }
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

const UNIFORMS = { scalars: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['batchRank', 'u32']], dims: 3 * MAX_RANK } as const;

/** WGSL giving `aBase`/`bBase` (element offsets of this batch's operands) from batch index `bz`. */
const BATCH_OFFSETS = `
fn batch_offsets(bz: u32) -> vec2<u32> {
  var rem = bz;
  var off = vec2<u32>(0u, 0u);
  for (var dd = i32(P.batchRank) - 1; dd >= 0; dd--) {
    let d = u32(dd);
    let c = rem % dim(d);
    rem = rem / dim(d);
    off += c * vec2<u32>(dim(${MAX_RANK}u + d), dim(${2 * MAX_RANK}u + d));
  }
  return off;
}`;

/** Scalar element accessors honouring transposition and dtype, for the bounds-checked and simple programs. */
function scalarAccessors(aType: DType, bType: DType, transA: boolean, transB: boolean): string {
  const ai = transA ? 'aBase + k * P.M + m' : 'aBase + m * P.K + k';
  const bi = transB ? 'bBase + n * P.K + k' : 'bBase + k * P.N + n';
  return `fn A_at(aBase: u32, m: u32, k: u32) -> f32 { return ${loadF32('A', aType, ai)}; }
fn B_at(bBase: u32, k: u32, n: u32) -> f32 { return ${loadF32('B', bType, bi)}; }`;
}

// ---- tiled

interface TileConfig {
  readonly TM: number;
  readonly TN: number;
  readonly BK: number;
}

// 4×8 per thread (64×128 tiles) measured fastest at 4096³ on the H200 (25.7 vs 22.2 TFLOP/s for 8×8).
const LARGE_TILE: TileConfig = { TM: 4, TN: 8, BK: 16 };
const SMALL_TILE: TileConfig = { TM: 4, TN: 4, BK: 16 };

function widenBf16x4(w: string): string {
  return `vec4<f32>(bitcast<f32>(${w}.x << 16u), bitcast<f32>(${w}.x & 0xffff0000u), bitcast<f32>(${w}.y << 16u), bitcast<f32>(${w}.y & 0xffff0000u))`;
}

function tiledProgram(cfg: TileConfig, aType: DType, bType: DType, transA: boolean, transB: boolean, aligned: boolean): Program {
  const { TM, TN, BK } = cfg;
  const BM = 16 * TM;
  const BN = 16 * TN;
  const fast = aligned && aType === 'float32' && (bType === 'float32' || bType === 'bfloat16');
  const bf16B = bType === 'bfloat16';
  const loadsPerThreadA = (BM * BK) / 4 / 256;
  const loadsPerThreadB = (BN * BK) / 4 / 256;

  // One vec4 of an operand tile: `contigK` operands are contiguous along k (A, or Bᵀ), else along m/n.
  const tileLoad = (op: 'A' | 'B', contigK: boolean, BD: number, perThread: number): string => {
    const outerDim = op === 'A' ? 'P.M' : 'P.N';
    const d0 = op === 'A' ? 'm0' : 'n0';
    const base = op === 'A' ? 'aBase' : 'bBase';
    const shared = op === 'A' ? 'As' : 'Bs';
    const lines: string[] = [];
    for (let p = 0; p < perThread; p++) {
      lines.push(`  {
    let idx = lid + ${p * 256}u;`);
      if (contigK) {
        lines.push(`    let d = idx / ${BK / 4}u;
    let k = (idx % ${BK / 4}u) * 4u;
    let g = ${base} + (${d0} + d) * P.K + k0 + k;`);
      } else {
        lines.push(`    let k = idx / ${BD / 4}u;
    let d = (idx % ${BD / 4}u) * 4u;
    let g = ${base} + (k0 + k) * ${outerDim} + ${d0} + d;`);
      }
      let value: string;
      if (fast) {
        value = op === 'B' && bf16B ? widenBf16x4(`B[g / 4u]`) : `${op}[g / 4u]`;
      } else {
        // Bounds-checked scalar loads; out-of-range elements are zero so they add nothing.
        const at = (j: number) => {
          const [m, k] = contigK ? [`${d0} + d`, `k0 + k + ${j}u`] : [`${d0} + d + ${j}u`, `k0 + k`];
          const inRange = `(${m}) < ${outerDim} && (${k}) < P.K`;
          const call = op === 'A' ? `A_at(aBase, ${m}, ${k})` : `B_at(bBase, ${k}, ${m})`;
          return `select(0.0, ${call}, ${inRange})`;
        };
        value = `vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')})`;
      }
      lines.push(`    let v = ${value};`);
      if (contigK) {
        for (let j = 0; j < 4; j++) lines.push(`    ${shared}[(k + ${j}u) * ${BD / 4}u + d / 4u][d % 4u] = v[${j}];`);
      } else {
        lines.push(`    ${shared}[k * ${BD / 4}u + d / 4u] = v;`);
      }
      lines.push('  }');
    }
    return lines.join('\n');
  };

  const aBinding = fast ? 'vec4<f32>' : storageType(aType);
  const bBinding = fast ? (bf16B ? 'vec2<u32>' : 'vec4<f32>') : storageType(bType);
  const inner: string[] = [];
  for (let c = 0; c < TM / 4; c++) inner.push(`      let a${c} = As[k * ${BM / 4}u + ${c * 16}u + ty];`);
  for (let c = 0; c < TN / 4; c++) inner.push(`      let b${c} = Bs[k * ${BN / 4}u + ${c * 16}u + tx];`);
  for (let i = 0; i < TM; i++) {
    for (let c = 0; c < TN / 4; c++) {
      inner.push(`      acc[${i * (TN / 4) + c}] = fma(vec4<f32>(a${Math.floor(i / 4)}[${i % 4}]), b${c}, acc[${i * (TN / 4) + c}]);`);
    }
  }
  const store: string[] = [];
  for (let i = 0; i < TM; i++) {
    const m = `m0 + ${Math.floor(i / 4) * 64 + (i % 4)}u + ty * 4u`;
    for (let c = 0; c < TN / 4; c++) {
      const n = `n0 + ${c * 64}u + tx * 4u`;
      const v = `acc[${i * (TN / 4) + c}]`;
      if (fast) {
        store.push(`  C[(cBase + (${m}) * P.N + ${n}) / 4u] = ${v};`);
      } else {
        store.push(`  {
    let m = ${m};
    let n = ${n};
    if (m < P.M) {
      let row = cBase + m * P.N;
      for (var j = 0u; j < 4u; j++) { if (n + j < P.N) { C[row + n + j] = ${v}[j]; } }
    }
  }`);
      }
    }
  }
  return {
    key: `matmul-tiled:${TM}x${TN}x${BK}:${aType}:${bType}:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}:${fast ? 'vec4' : 'checked'}`,
    name: `matmul tiled ${BM}x${BN}`,
    uniforms: UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', fast ? 'vec4<f32>' : 'f32')}
${bindInput(2, 'A', aBinding)}
${bindInput(3, 'B', bBinding)}
${fast ? '' : scalarAccessors(aType, bType, transA, transB)}
var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid3.x;
  let ty = lid3.y;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let offs = batch_offsets(wid.z);
  let aBase = offs.x;
  let bBase = offs.y;
  let cBase = wid.z * P.M * P.N;
  var acc: array<vec4<f32>, ${(TM * TN) / 4}>;
  for (var k0 = 0u; k0 < P.K; k0 += ${BK}u) {
${tileLoad('A', !transA, BM, loadsPerThreadA)}
${tileLoad('B', transB, BN, loadsPerThreadB)}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
${inner.join('\n')}
    }
    workgroupBarrier();
  }
${store.join('\n')}
}`,
  };
}

// ---- gemv (M = 1)

const GEMV_ROWS = 4;
const GEMV_LANES = 64;

function gemvProgram(aType: DType, bType: DType, transB: boolean, subgroups: boolean): Program {
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
${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', 'f32')}
${bindInput(2, 'A', storageType(aType))}
${bindInput(3, 'B', storageType(bType))}
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
    source: () => `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', 'f32')}
${bindInput(2, 'A', storageType(aType))}
${bindInput(3, 'B', storageType(bType))}
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
  return {
    key: `matmul-smallk:${aType}:${bType}:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`,
    name: 'matmul small-K',
    uniforms: UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindOutput(1, 'C', 'f32')}
${bindInput(2, 'A', storageType(aType))}
${bindInput(3, 'B', storageType(bType))}
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
  if (M === 1) return 'gemv';
  if (K <= 32) return 'smallK';
  return 'tiled';
}

function env(name: string): string | undefined {
  return typeof process !== 'undefined' ? process.env?.[name] : undefined;
}

function envVariant(): MatmulVariant | undefined {
  const v = env('DORA_WEBGPU_MATMUL');
  return v === 'tiled' || v === 'gemv' || v === 'smallK' ? v : undefined;
}

/** `DORA_WEBGPU_TILE=TMxTNxBK` (e.g. 8x8x16) forces the tiled program's blocking, for tuning runs. */
function envTile(): TileConfig | undefined {
  const m = /^(4|8)x(4|8)x(8|16|32)$/.exec(env('DORA_WEBGPU_TILE') ?? '');
  if (!m) return undefined;
  const cfg = { TM: Number(m[1]), TN: Number(m[2]), BK: Number(m[3]) };
  // Every thread must load at least one vec4 of each operand tile.
  return 16 * cfg.TM * cfg.BK >= 1024 && 16 * cfg.TN * cfg.BK >= 1024 ? cfg : undefined;
}

export function matmul(ctx: KernelContext, a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]): GpuTensor {
  const s = resolveShape(a, b, options, outShape);
  const transA = options.transposeA ?? false;
  const transB = options.transposeB ?? false;
  const aType = a.t.dtype;
  const bType = b.t.dtype;
  for (const [name, t] of [['a', aType], ['b', bType]] as const) {
    if (t === 'int32') throw new DTypeError(`webgpu matmul: operand ${name} is int32; cast to float32 first`);
  }
  const out = ctx.alloc('float32', s.batch * s.M * s.N);
  if (s.batch === 0 || s.M === 0 || s.N === 0) return out;
  if (s.batch > ctx.rt.limits.maxComputeWorkgroupsPerDimension) {
    throw new ShapeError(`webgpu matmul: batch of ${s.batch} exceeds the device's workgroup grid`);
  }
  let variant: MatmulVariant = ctx.options.matmulVariant !== 'auto' ? ctx.options.matmulVariant : (envVariant() ?? 'auto');
  if (variant === 'auto') variant = chooseMatmulVariant(s.M, s.K);
  if (variant === 'gemv' && s.M !== 1) variant = 'smallK';
  if (variant === 'tiled' && ctx.maxInvocations < 256) variant = 'smallK';
  const scalars = { M: s.M, N: s.N, K: s.K, batchRank: s.batchRank };
  const maxPerDim = ctx.rt.limits.maxComputeWorkgroupsPerDimension;
  if (variant === 'gemv') {
    const program = gemvProgram(aType, bType, transB, ctx.options.subgroups);
    const groups = Math.ceil(s.N / (transB ? GEMV_ROWS : GEMV_LANES));
    const [x, y] = grid(groups, maxPerDim);
    ctx.rt.dispatch({ program, outputs: [out.buf], inputs: [a.t.buf, b.t.buf], scalars, dims: s.dims, workgroups: [x, y, s.batch] });
  } else if (variant === 'smallK') {
    const program = smallKProgram(aType, bType, transA, transB);
    ctx.rt.dispatch({
      program,
      outputs: [out.buf],
      inputs: [a.t.buf, b.t.buf],
      scalars,
      dims: s.dims,
      workgroups: [Math.ceil(s.N / 64), Math.ceil(s.M / 16), s.batch],
    });
  } else {
    const cfg = envTile() ?? (s.M >= 256 && s.N >= 256 ? LARGE_TILE : SMALL_TILE);
    const BM = 16 * cfg.TM;
    const BN = 16 * cfg.TN;
    const aligned = s.M % BM === 0 && s.N % BN === 0 && s.K % cfg.BK === 0;
    const program = tiledProgram(cfg, aType, bType, transA, transB, aligned);
    ctx.rt.dispatch({
      program,
      outputs: [out.buf],
      inputs: [a.t.buf, b.t.buf],
      scalars,
      dims: s.dims,
      workgroups: [Math.ceil(s.N / BN), Math.ceil(s.M / BM), s.batch],
    });
  }
  return out;
}
