/**
 * Row-streaming kernels over a row-major matrix W [rows, cols] (the Linear weight layout), one pass over
 * W with coalesced 16-byte reads:
 * - GEMV `y = x·Wᵀ` (decode, M = 1);
 * - the DoRA weight norm `‖W[o,:] + s·(B·A)[o,:]‖` per row, with B·A formed in registers from A held per
 *   thread (r ≤ 16 at once) and B's rows in workgroup memory: no buffer of rows·cols values, no second pass;
 * - both at once (`y` and the norm from one read of W: DoRA's uncached decode step).
 *
 * A workgroup owns ROWS consecutive rows and all columns; thread t reads columns [4t, 4t+4) of every 4·WG
 * (WG = 256 threads, or 128 on a compatibility-mode device).
 * That keeps A's slice in registers across the ROWS rows (A is read once per workgroup, from cache) and
 * makes every row's reduction a single workgroup reduction at the end, with subgroup operations where the
 * device has them. Requires cols % 4 == 0, x and A float32; W in any storage format (`wgsl/weights.ts`), widened in registers.
 *
 * The optional compose epilogue writes y' = bias + g ⊙ (y + s·lora) beside y (see `doraCompose`).
 */
import type { DType } from '@dorajs/core';
import { memoProgram, type Program } from '../runtime.js';
import { BATCH_OFFSETS, bindInput, bindOutput, DIMS_ACCESSOR, loadF32, storageType } from '../wgsl/common.js';
import { MAX_RANK } from '../shapes.js';
import { bindWeight, codecKey, isQuantized, weightDecoder, type WeightCodec } from '../wgsl/weights.js';

/** Threads per workgroup where the device allows it. */
export const ROWS_WORKGROUP = 256;

/** What sizes a row-streaming program's workgroup memory besides its workgroup size. */
export interface RowsShape {
  readonly rows: number;
  readonly gemv: boolean;
  readonly norm: boolean;
  readonly subgroups: boolean;
}

/** Bytes of workgroup memory a row-streaming program of WG threads takes (B's rows, the reduction). */
function rowsStorageBytes({ rows, gemv, norm, subgroups }: RowsShape, WG: number): number {
  const nred = (gemv ? rows : 0) + (norm ? rows : 0);
  const bs = norm ? rows * ROWS_MAX_RANK * 4 : 0;
  return bs + (subgroups ? nred * (WG / 4) * 4 : Math.min(nred, RED_CHUNK) * WG * 4 + nred * 4);
}

/**
 * The workgroup size of a row-streaming program on a device: ROWS_WORKGROUP, or the largest power of two
 * (≥ 32; ≥ 128 with subgroups, which may be 128 wide) within its invocation and workgroup-memory limits (128 threads on a compatibility-mode device with
 * default limits; 128 for the norm of 16 rows, whose 256-thread form takes 16.1 KiB, on any device with the
 * default 16 KiB); 0 if none fits.
 */
export function rowsWorkgroup(limits: GPUSupportedLimits, shape: RowsShape): number {
  const most = Math.min(ROWS_WORKGROUP, limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  for (let WG = 2 ** Math.floor(Math.log2(most)); WG >= (shape.subgroups ? 128 : 32); WG /= 2) {
    if (rowsStorageBytes(shape, WG) <= limits.maxComputeWorkgroupStorageSize) return WG;
  }
  return 0;
}

/** Largest rank the norm variant keeps B's rows for in workgroup memory. */
export const ROWS_MAX_RANK = 128;
/** A's rows held in registers at once. */
const KC_MAX = 16;
/** Values reduced at once by the workgroup-memory tree (bounds its workgroup memory). */
const RED_CHUNK = 8;

/** Tree reduction in workgroup memory, RED_CHUNK values at a time; thread j < values ends with `total` = Σ value j. */
function sharedReduce(values: readonly string[], WG: number): string {
  const lines: string[] = [];
  for (let c0 = 0; c0 < values.length; c0 += RED_CHUNK) {
    const chunk = values.slice(c0, c0 + RED_CHUNK);
    lines.push(`${chunk.map((v, j) => `  red[${j * WG}u + lid] = ${v};`).join('\n')}
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      for (var j = 0u; j < ${chunk.length}u; j++) { red[j * ${WG}u + lid] += red[j * ${WG}u + lid + s]; }
    }
    workgroupBarrier();
  }
  if (lid < ${chunk.length}u) { totals[${c0}u + lid] = red[lid * ${WG}u]; }
  workgroupBarrier();`);
  }
  lines.push(`  var total = 0.0;
  if (lid < ${values.length}u) { total = totals[lid]; }`);
  return lines.join('\n');
}

export interface RowsConfig {
  /** Rows per workgroup (compile-time). */
  readonly rows: number;
  /** Threads per workgroup (`rowsWorkgroup`), at least 32. */
  readonly workgroup: number;
  readonly gemv: boolean;
  /** The norm variant's rank r (compile-time: sizes the register chunk of A), 0 without the norm. */
  readonly rank: number;
  /** How W is stored (float32, bf16, f16, nf4/fp4, int8): widened in registers by `w_at4`. */
  readonly w: WeightCodec;
  readonly bType: DType;
  readonly compose: boolean;
  readonly composeBias: boolean;
  readonly subgroups: boolean;
}

export const ROWS_UNIFORMS = {
  scalars: [
    ['N', 'u32'],
    ['K', 'u32'],
    ['r', 'u32'],
    ['batchRank', 'u32'],
    ['scale', 'f32'],
    ['escale', 'f32'],
  ],
  dims: 3 * MAX_RANK,
} as const;

function rowsKey(cfg: RowsConfig): string {
  const norm = cfg.rank > 0 ? `+norm${cfg.rank <= KC_MAX ? cfg.rank : 'k'}:${cfg.bType}` : '';
  const compose = cfg.compose ? (cfg.composeBias ? ':compose+bias' : ':compose') : '';
  return `rows:${cfg.rows}${cfg.workgroup === ROWS_WORKGROUP ? '' : `/${cfg.workgroup}`}:${cfg.gemv ? 'gemv' : ''}${norm}:${codecKey(cfg.w)}${compose}${cfg.subgroups ? ':sg' : ''}`;
}

export function rowsProgram(cfg: RowsConfig): Program {
  const key = rowsKey(cfg);
  return memoProgram(key, () => buildRowsProgram(cfg, key));
}

function buildRowsProgram(cfg: RowsConfig, key: string): Program {
  const { rows: R, gemv, rank, compose, subgroups } = cfg;
  const norm = rank > 0;
  const KC = Math.min(rank, KC_MAX);
  const exact = rank <= KC_MAX;
  const WG = cfg.workgroup;
  const nred = (gemv ? R : 0) + (norm ? R : 0);
  const wLoad = (idx: string) => `W_at4(${idx})`;

  // Bindings: outputs first (y, then norm or the composed y'), inputs after.
  const bindings: string[] = [];
  let binding = 1;
  if (gemv) bindings.push(bindOutput(binding++, 'C', 'f32'));
  if (norm) bindings.push(bindOutput(binding++, 'NORM', 'f32'));
  if (compose) bindings.push(bindOutput(binding++, 'Y', 'f32'));
  if (gemv) bindings.push(bindInput(binding++, 'X', 'vec4<f32>'));
  const [wBindings, wCount] = bindWeight(cfg.w, binding, true);
  bindings.push(wBindings);
  binding += wCount;
  if (norm) {
    bindings.push(bindInput(binding++, 'Am', 'vec4<f32>'));
    bindings.push(bindInput(binding++, 'Bm', storageType(cfg.bType)));
  }
  if (compose) {
    bindings.push(bindInput(binding++, 'LORA', 'f32'));
    bindings.push(bindInput(binding++, 'G', 'f32'));
    if (cfg.composeBias) bindings.push(bindInput(binding++, 'BIAS', 'f32'));
  }

  // B's rows sit in workgroup memory as vec4s of 4 consecutive k (one broadcast read serves 16 FMAs).
  const aLoads = (k0: string): string[] =>
    Array.from({ length: KC }, (_, kk) => {
      const k = `${k0} + ${kk}u`;
      return exact
        ? `      let a${kk} = Am[((${k}) * P.K + c) / 4u];`
        : `      var a${kk} = vec4<f32>(0.0);
      if (${k} < P.r) { a${kk} = Am[((${k}) * P.K + c) / 4u]; }`;
    });
  // (B·A)[row, c..c+3] from the A chunk in registers.
  const baTerms = (rr: number, acc: string, k0: string | null): string[] => {
    const lines: string[] = [];
    for (let q = 0; q < Math.ceil(KC / 4); q++) {
      lines.push(
        k0 === null
          ? `        let b${q} = Bs[${(rr * ROWS_MAX_RANK) / 4 + q}u];`
          : `        let b${q} = Bs[${(rr * ROWS_MAX_RANK) / 4}u + (${k0}) / 4u + ${q}u];`,
      );
    }
    for (let kk = 0; kk < KC; kk++) lines.push(`        ${acc} = fma(vec4<f32>(b${kk >> 2}[${kk & 3}]), a${kk}, ${acc});`);
    return lines;
  };

  const body: string[] = [];
  if (norm && exact) body.push(...aLoads('0u'));
  if (norm && !exact) {
    // r > 16: B·A accumulates over chunks of 16 rows of A before W is added.
    body.push(`      var ba: array<vec4<f32>, ${R}>;
      for (var k0 = 0u; k0 < P.r; k0 += ${KC}u) {
${aLoads('k0').join('\n')}`);
    for (let rr = 0; rr < R; rr++) body.push(`        {\n${baTerms(rr, `ba[${rr}]`, 'k0').join('\n')}\n        }`);
    body.push('      }');
  }
  for (let rr = 0; rr < R; rr++) {
    body.push(`      {
        let w = ${wLoad(`bBase + min(row0 + ${rr}u, P.N - 1u) * P.K + c`)};`);
    if (gemv) body.push(`        dots[${rr}] += dot(w, xv);`);
    if (norm) {
      if (exact) body.push('        var ba = vec4<f32>(0.0);', ...baTerms(rr, 'ba', null));
      body.push(`        let v = w + P.scale * ${exact ? 'ba' : `ba[${rr}]`};
        sq[${rr}] = fma(v.x, v.x, fma(v.y, v.y, fma(v.z, v.z, fma(v.w, v.w, sq[${rr}]))));`);
    }
    body.push('      }');
  }

  // Per-row sums across the workgroup: red[j][*] for j < nred (dots first, then squares).
  const values = [
    ...(gemv ? Array.from({ length: R }, (_, i) => `dots[${i}]`) : []),
    ...(norm ? Array.from({ length: R }, (_, i) => `sq[${i}]`) : []),
  ];
  const reduce = subgroups
    ? `  // Subgroups are taken to be consecutive invocations (true of every implementation for 1-D workgroups).
  let nsg = ${WG}u / sgsize;
${values.map((v, j) => `  let s${j} = subgroupAdd(${v});`).join('\n')}
  if (sgid == 0u) {
${values.map((_, j) => `    red[${j * (WG / 4)}u + lid / sgsize] = s${j};`).join('\n')}
  }
  workgroupBarrier();
  var total = 0.0;
  if (lid < ${nred}u) {
    for (var i = 0u; i < nsg; i++) { total += red[lid * ${WG / 4}u + i]; }
  }`
    : sharedReduce(values, WG);

  const writes: string[] = [];
  if (gemv) {
    writes.push(`  if (lid < ${R}u) {
    let o = row0 + lid;
    if (o < P.N) {
      C[wid.z * P.N + o] = total;${
        compose
          ? `
      let yo = fma(P.escale, LORA[wid.z * P.N + o], total) * G[o];
      Y[wid.z * P.N + o] = ${cfg.composeBias ? 'BIAS[o] + yo' : 'yo'};`
          : ''
      }
    }
  }`);
  }
  if (norm) {
    const j0 = gemv ? R : 0;
    writes.push(`  if (lid >= ${j0}u && lid < ${j0 + R}u) {
    let o = row0 + lid - ${j0}u;
    if (o < P.N) { NORM[o] = sqrt(total); }
  }`);
  }

  return {
    key,
    name: `${gemv ? 'gemv' : ''}${gemv && norm ? ' + ' : ''}${norm ? 'weightNorm' : ''} rows${compose ? ' + compose' : ''}`,
    uniforms: ROWS_UNIFORMS,
    outputs: (gemv ? 1 : 0) + (norm ? 1 : 0) + (compose ? 1 : 0),
    inputs: (gemv ? 1 : 0) + (isQuantized(cfg.w) ? 2 : 1) + (norm ? 2 : 0) + (compose ? (cfg.composeBias ? 3 : 2) : 0),
    source: () => `${subgroups ? 'enable subgroups;' : ''}
${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${weightDecoder(cfg.w, true, 'P.K')}
${bindings.join('\n')}
${norm ? `var<workgroup> Bs: array<vec4<f32>, ${(R * ROWS_MAX_RANK) / 4}>;` : ''}
var<workgroup> red: array<f32, ${subgroups ? nred * (WG / 4) : Math.min(nred, RED_CHUNK) * WG}>;
${subgroups ? '' : `var<workgroup> totals: array<f32, ${nred}>;`}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${
      subgroups ? ', @builtin(subgroup_invocation_id) sgid: u32, @builtin(subgroup_size) sgsize: u32' : ''
    }) {
  let row0 = (wid.x + wid.y * nwg.x) * ${R}u;
  let offs = batch_offsets(wid.z);
  let bBase = offs.y;
${gemv ? '  let aBase = offs.x;' : ''}
${
  norm
    ? `  for (var i = lid; i < ${R}u * P.r; i += ${WG}u) {
    let rr = i / P.r;
    let k = i % P.r;
    Bs[(rr * ${ROWS_MAX_RANK}u + k) / 4u][k % 4u] = ${loadF32('Bm', cfg.bType, 'min(row0 + rr, P.N - 1u) * P.r + k')};
  }
  workgroupBarrier();`
    : ''
}
${gemv ? `  var dots: array<f32, ${R}>;` : ''}
${norm ? `  var sq: array<f32, ${R}>;` : ''}
  for (var c = lid * 4u; c < P.K; c += ${WG * 4}u) {
${gemv ? '    let xv = X[(aBase + c) / 4u];' : ''}
${body.join('\n')}
  }
${reduce}
${writes.join('\n')}
}`,
  };
}
