/** K ≤ 32 (LoRA's B·(A·x)): one thread per 4 outputs, operands read straight from global memory. */
import type { DType } from '@dorajs/core';
import type { BoundType } from '../../wgsl/common.js';
import { memoProgram, type Program } from '../../runtime.js';
import { scalarAccessors, scalarOperands, UNIFORMS } from './operands.js';

/** Rows of C per workgroup (16 threads each): 16, fewer where the device allows fewer than 256 invocations. */
export function smallKRows(maxInvocations: number): number {
  return Math.max(1, Math.min(16, Math.floor(maxInvocations / 16)));
}

export function smallKProgram(aType: DType, bType: BoundType, transA: boolean, transB: boolean, rows = 16): Program {
  const key = `matmul-smallk:${aType}:${bType}:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}${rows === 16 ? '' : `:${rows}`}`;
  return memoProgram(key, () => buildSmallKProgram(key, aType, bType, transA, transB, rows));
}

function buildSmallKProgram(key: string, aType: DType, bType: BoundType, transA: boolean, transB: boolean, rows: number): Program {
  return {
    key,
    name: 'matmul small-K',
    uniforms: UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${scalarOperands(aType, bType)}
${scalarAccessors(aType, bType, transA, transB)}
@compute @workgroup_size(16, ${rows})
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
