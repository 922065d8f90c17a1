/**
 * The tiled matmul: 16×TY threads (TY = 16, or 8 on a device with 128 invocations per workgroup), each
 * owning a TM×TN register block of a (TY·TM)×(16·TN) output tile;
 * double-buffered operand tiles in workgroup memory; vec4 loads and stores when the contiguous dimensions
 * are multiples of 4 (a scalar, bounds-checked program otherwise); K optionally split across workgroups
 * (the slices are added by `split-reduce.ts`).
 */
import type { DType } from '@dorajs/core';
import { memoProgram, type Program } from '../../runtime.js';
import { BATCH_OFFSETS, bindInput, bindOutput, type BoundType, DIMS_ACCESSOR, storageType } from '../../wgsl/common.js';
import { bindWeight, codecKey, isQuantized, type WeightCodec, weightDecoder } from '../../wgsl/weights.js';
import { scalarAccessors, UNIFORMS } from './operands.js';

/** A blocking of the tiled program: TM×TN outputs per thread, K tiles of BK. */
export interface TileBlocking {
  readonly TM: number;
  readonly TN: number;
  readonly BK: number;
}

export interface TileConfig extends TileBlocking {
  /** Rows of 16 threads (a power of two ≤ 16): 16 × TY invocations per workgroup, chosen from the device's limits. */
  readonly TY: number;
}

/** Columns of threads: every row of the workgroup is 16 threads wide. */
const TX = 16;

/** Output rows and columns of one workgroup's tile. */
export function tileShape(cfg: TileConfig): { readonly BM: number; readonly BN: number } {
  return { BM: cfg.TY * cfg.TM, BN: TX * cfg.TN };
}

/** Whether every thread loads a whole number (≥ 1) of vec4s of both operand tiles per K tile. */
export function tileLoadsEvenly(cfg: TileConfig): boolean {
  const { BM, BN } = tileShape(cfg);
  const threads = TX * cfg.TY;
  const per = (d: number) => (d * cfg.BK) / 4 / threads;
  return Number.isInteger(per(BM)) && per(BM) >= 1 && Number.isInteger(per(BN)) && per(BN) >= 1;
}

export type Epilogue = 'none' | 'compose' | 'composeBias';

export interface TiledKey {
  readonly cfg: TileConfig;
  readonly aType: DType;
  /** B's dtype as bound (`BoundType`: float16 as f16 where the device has shader-f16). */
  readonly bType: BoundType;
  /** How B is stored when `vec` (dense float32/bf16/f16, or packed nf4/fp4/int8 with scales), widened by `B_at4`. */
  readonly b: WeightCodec;
  readonly transA: boolean;
  readonly transB: boolean;
  /** vec4 loads and stores (contiguous dimensions multiples of 4, float32 A); else scalar (dense B only). */
  readonly vec: boolean;
  /** Writes partial sums per K slice (reduced by `splitReduceProgram`). */
  readonly split: boolean;
  readonly epilogue: Epilogue;
}

export /** Bytes of workgroup memory the tiled program needs (both buffers of both operand tiles). */
function tiledStorageBytes(cfg: TileConfig, transA: boolean, transB: boolean): number {
  const { BM, BN } = tileShape(cfg);
  return 2 * cfg.BK * (BM + (transA ? 0 : 4) + BN + (transB ? 4 : 0)) * 4;
}

/**
 * 16×TY threads, each computing a TM×TN block of a (TY·TM)×(16·TN) tile as strided 4×4 sub-blocks (rows
 * ty·4 + 4·TY·i, columns tx·4 + 64·j), so every workgroup-memory read is a conflict-free vec4. Operand tiles
 * are double-buffered in workgroup memory: the next K tile is loaded into registers while the current one
 * is multiplied, then stored into the other buffer, with one barrier per K tile. Operands contiguous along
 * K (A, and Bᵀ) are transposed while being stored, into rows padded by 4 floats so the scalar stores do
 * not collide on banks. Workgroups whose tile lies inside the matrix take branch-free loads and stores;
 * edge workgroups check bounds (one program, a workgroup-uniform branch).
 */
export function tiledProgram(t: TiledKey): Program {
  const key = `matmul-tiled:${t.cfg.TM}x${t.cfg.TN}x${t.cfg.BK}${t.cfg.TY === 16 ? '' : `/${t.cfg.TY}`}:${t.aType}:${t.vec ? codecKey(t.b) : t.bType}:${t.transA ? 'T' : 'N'}${t.transB ? 'T' : 'N'}:${t.vec ? 'vec4' : 'scalar'}${t.split ? ':split' : ''}:${t.epilogue}`;
  return memoProgram(key, () => buildTiledProgram(t, key));
}

function buildTiledProgram(t: TiledKey, key: string): Program {
  const { cfg, aType, bType, transA, transB, vec, split, epilogue } = t;
  const { TM, TN, BK, TY } = cfg;
  const { BM, BN } = tileShape(cfg);
  const THREADS = TX * TY;
  const aContigK = !transA;
  const bContigK = transB;
  const APAD = BM + (aContigK ? 4 : 0);
  const BPAD = BN + (bContigK ? 4 : 0);
  const perA = (BM * BK) / 4 / THREADS;
  const perB = (BN * BK) / 4 / THREADS;
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
        let idx = lid + ${p * THREADS}u;`);
      lines.push(slotCoords(contigK, BD, '        '));
      const g = contigK ? `${base} + (${d0} + d) * P.K + k0 + k` : `${base} + (k0 + k) * ${outer} + ${d0} + d`;
      if (vec) {
        const raw = `${op}[(${g}) / 4u]`;
        const value = op === 'B' ? `B_at4(${g})` : raw;
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
      let idx = lid + ${p * THREADS}u;`);
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
      for (let c = 0; c < TM / 4; c++) lines.push(`    let a${k}_${c} = As${buf}[${k * (APAD / 4) + c * TY}u + ty];`);
      for (let c = 0; c < TN / 4; c++) lines.push(`    let b${k}_${c} = Bs${buf}[${k * (BPAD / 4) + c * TX}u + tx];`);
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
      const m = `m0 + ${Math.floor(i / 4) * 4 * TY + (i % 4)}u + ty * 4u`;
      for (let c = 0; c < TN / 4; c++) {
        const n = `n0 + ${c * 4 * TX}u + tx * 4u`;
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
  if (vec) {
    const [bBindings, count] = bindWeight(t.b, binding, true, 'B');
    bindings.push(bBindings);
    binding += count;
  } else {
    bindings.push(bindInput(binding++, 'B', storageType(bType)));
  }
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
    inputs: (compose ? (epilogue === 'composeBias' ? 5 : 4) : 2) + (vec && isQuantized(t.b) ? 1 : 0),
    source: () => `${DIMS_ACCESSOR}
${BATCH_OFFSETS}
${bindings.join('\n')}
${vec ? weightDecoder(t.b, true, transB ? 'P.K' : 'P.N', 'B') : scalarAccessors(aType, bType, transA, transB)}
var<workgroup> As0: array<vec4<f32>, ${(BK * APAD) / 4}>;
var<workgroup> As1: array<vec4<f32>, ${(BK * APAD) / 4}>;
var<workgroup> Bs0: array<vec4<f32>, ${(BK * BPAD) / 4}>;
var<workgroup> Bs1: array<vec4<f32>, ${(BK * BPAD) / 4}>;
@compute @workgroup_size(${TX}, ${TY})
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
