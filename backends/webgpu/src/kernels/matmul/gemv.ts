/**
 * The GEMV for M = 1 (decoding) when the row-streaming program (`rows.ts`) does not apply: x·Wᵀ reduces
 * each output across GEMV_LANES threads; x·W keeps a column per thread.
 */
import type { DType } from '@dorajs/core';
import { memoProgram, type Program } from '../../runtime.js';
import { loadF32, type BoundType } from '../../wgsl/common.js';
import { scalarOperands, UNIFORMS } from './operands.js';

export const GEMV_ROWS = 4;
export const GEMV_LANES = 64;

/** Rows of threads per workgroup (GEMV_LANES each): GEMV_ROWS, fewer where the device allows fewer invocations. */
export function gemvRows(maxInvocations: number): number {
  return Math.max(1, Math.min(GEMV_ROWS, Math.floor(maxInvocations / GEMV_LANES)));
}

export function gemvProgram(aType: DType, bType: BoundType, transB: boolean, subgroups: boolean, rows = GEMV_ROWS): Program {
  const key = `matmul-gemv:${aType}:${bType}:${transB ? 'T' : 'N'}${subgroups && transB ? ':sg' : ''}${rows === GEMV_ROWS ? '' : `:${rows}`}`;
  return memoProgram(key, () => buildGemvProgram(key, aType, bType, transB, subgroups, rows));
}

function buildGemvProgram(key: string, aType: DType, bType: BoundType, transB: boolean, subgroups: boolean, ROWS: number): Program {
  // transB (B is [N, K], the Linear weight layout): each output is a contiguous dot product reduced by
  // GEMV_LANES threads. Otherwise (B is [K, N]) each thread owns an output column, so reads of a row of B
  // are coalesced, and the workgroup's GEMV_ROWS rows split K.
  const useSubgroups = subgroups && transB;
  if (transB) {
    return {
      key,
      name: 'matmul gemv (Bᵀ)',
      uniforms: UNIFORMS,
      outputs: 1,
      inputs: 2,
      source: () => `${useSubgroups ? 'enable subgroups;' : ''}
${scalarOperands(aType, bType)}
var<workgroup> partial: array<f32, ${ROWS * GEMV_LANES}>;
@compute @workgroup_size(${GEMV_LANES}, ${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let lane = lid3.x;
  let n = (wid.x + wid.y * nwg.x) * ${ROWS}u + lid3.y;
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
var<workgroup> partial: array<f32, ${ROWS * GEMV_LANES}>;
@compute @workgroup_size(${GEMV_LANES}, ${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let n = (wid.x + wid.y * nwg.x) * ${GEMV_LANES}u + lid3.x;
  let offs = batch_offsets(wid.z);
  var s = 0.0;
  if (n < P.N) {
    for (var k = lid3.y; k < P.K; k += ${ROWS}u) {
      s = fma(${loadF32('A', aType, 'offs.x + k')}, ${loadF32('B', bType, 'offs.y + k * P.N + n')}, s);
    }
  }
  partial[lid3.y * ${GEMV_LANES}u + lid3.x] = s;
  workgroupBarrier();
  if (lid3.y == 0u && n < P.N) {
    var t = 0.0;
    for (var r = 0u; r < ${ROWS}u; r++) { t += partial[r * ${GEMV_LANES}u + lid3.x]; }
    C[wid.z * P.N + n] = t;
  }
}`,
  };
}
