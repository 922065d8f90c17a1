/**
 * Reductions. When the reduced axes are the trailing ones (the common case: rows), a workgroup reduces one
 * row cooperatively in workgroup memory; otherwise each thread owns an output element and walks the reduced
 * index space through strides in uniforms (coalesced for leading-axis reductions such as bias gradients).
 */
import type { DType, ReduceOp } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { assertRank, grid, MAX_RANK, padTo, sizeOf, stridesOf } from '../shapes.js';
import { MATH_HELPERS } from '../wgsl/math.js';
import {
  bindInput,
  bindOutput,
  DIMS_ACCESSOR,
  ELEMENTWISE_WORKGROUP as WG,
  linearMain,
  loadF32,
  loadI32,
  storageType,
} from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';

/** Threads cooperating on one row. */
export const ROW_WG = 128;

export function reduceOutDType(op: ReduceOp, dtype: DType): DType {
  return dtype === 'int32' && op !== 'mean' ? 'int32' : 'float32';
}

interface Combine {
  readonly type: 'f32' | 'i32';
  readonly init: string;
  readonly step: (acc: string, x: string) => string;
}

function combiner(op: ReduceOp, int: boolean): Combine {
  const type = int ? 'i32' : 'f32';
  switch (op) {
    case 'sum':
    case 'mean':
      return { type, init: int ? '0' : '0.0', step: (acc, x) => `${acc} + ${x}` };
    case 'max':
      return { type, init: int ? '-2147483647 - 1' : 'f32_neg_inf()', step: (acc, x) => `${int ? 'max' : 'max_nan'}(${acc}, ${x})` };
    case 'min':
      return { type, init: int ? '2147483647' : 'f32_pos_inf()', step: (acc, x) => `${int ? 'min' : 'min_nan'}(${acc}, ${x})` };
  }
}

function rowProgram(op: ReduceOp, dtype: DType, int: boolean): Program {
  const c = combiner(op, int);
  const load = int ? loadI32('a', dtype, 'base + j') : loadF32('a', dtype, 'base + j');
  return {
    key: `reduce-row:${op}:${dtype}`,
    name: `reduce ${op} (rows)`,
    uniforms: {
      scalars: [
        ['rows', 'u32'],
        ['cols', 'u32'],
        ['scale', 'f32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${MATH_HELPERS}
${bindOutput(1, 'out', c.type)}
${bindInput(2, 'a', storageType(dtype))}
var<workgroup> partial: array<${c.type}, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.rows) { return; }
  let base = row * P.cols;
  var acc: ${c.type} = ${c.init};
  for (var j = lid; j < P.cols; j += ${ROW_WG}u) { acc = ${c.step('acc', load)}; }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = ${c.step('partial[lid]', 'partial[lid + s]')}; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row] = ${op === 'mean' ? 'partial[0] * P.scale' : 'partial[0]'}; }
}`,
  };
}

function generalProgram(op: ReduceOp, dtype: DType, int: boolean): Program {
  const c = combiner(op, int);
  const load = int ? loadI32('a', dtype, 'base + off') : loadF32('a', dtype, 'base + off');
  // dims: out shape | in strides of kept axes (0 on reduced) | reduced sizes | reduced strides
  return {
    key: `reduce-general:${op}:${dtype}`,
    name: `reduce ${op}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['rank', 'u32'],
        ['nred', 'u32'],
        ['rcount', 'u32'],
        ['scale', 'f32'],
      ],
      dims: 4 * MAX_RANK,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${MATH_HELPERS}
${DIMS_ACCESSOR}
${bindOutput(1, 'out', c.type)}
${bindInput(2, 'a', storageType(dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  var rem = index;
  var base = 0u;
  for (var dd = i32(P.rank) - 1; dd >= 0; dd--) {
    let d = u32(dd);
    let cidx = rem % dim(d);
    rem = rem / dim(d);
    base += cidx * dim(${MAX_RANK}u + d);
  }
  var acc: ${c.type} = ${c.init};
  for (var r = 0u; r < P.rcount; r++) {
    var rr = r;
    var off = 0u;
    for (var kk = i32(P.nred) - 1; kk >= 0; kk--) {
      let k = u32(kk);
      let sz = dim(${2 * MAX_RANK}u + k);
      off += (rr % sz) * dim(${3 * MAX_RANK}u + k);
      rr = rr / sz;
    }
    acc = ${c.step('acc', load)};
  }
  out[index] = ${op === 'mean' ? 'acc * P.scale' : 'acc'};`,
)}`,
  };
}

export function reduce(ctx: KernelContext, op: ReduceOp, a: TensorArg, axes: readonly number[], outShape: readonly number[]): GpuTensor {
  assertRank(a.shape, `reduce ${op}`);
  const dtype = a.t.dtype;
  const outDType = reduceOutDType(op, dtype);
  const int = outDType === 'int32';
  const rank = a.shape.length;
  const reduced = axes.reduce((n, ax) => n * a.shape[ax]!, 1);
  const nOut = sizeOf(outShape);
  const out = ctx.alloc(outDType, nOut);
  const scale = reduced > 0 ? 1 / reduced : Number.NaN;
  const trailing = axes.every((ax, i) => ax === rank - axes.length + i);
  const maxPerDim = ctx.rt.limits.maxComputeWorkgroupsPerDimension;
  if (trailing && reduced >= 32) {
    ctx.rt.dispatch({
      program: rowProgram(op, dtype, int),
      outputs: [out.buf],
      inputs: [a.t.buf],
      scalars: { rows: nOut, cols: reduced, scale },
      workgroups: grid(nOut, maxPerDim),
    });
    return out;
  }
  const strides = stridesOf(a.shape);
  const keptStrides = strides.map((s, i) => (axes.includes(i) ? 0 : s));
  const dims = [
    ...padTo(
      a.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
      MAX_RANK,
      1,
    ),
    ...padTo(keptStrides, MAX_RANK),
    ...padTo(
      axes.map((ax) => a.shape[ax]!),
      MAX_RANK,
      1,
    ),
    ...padTo(
      axes.map((ax) => strides[ax]!),
      MAX_RANK,
    ),
  ];
  ctx.rt.dispatch({
    program: generalProgram(op, dtype, int),
    outputs: [out.buf],
    inputs: [a.t.buf],
    scalars: { n: nOut, rank, nred: axes.length, rcount: reduced, scale },
    dims,
    workgroups: grid(Math.ceil(nOut / WG), maxPerDim),
  });
  return out;
}

/** Row-wise softmax / log-softmax over the last axis: one workgroup per row, three passes over the row. */
export function softmax(ctx: KernelContext, a: TensorArg, log: boolean): GpuTensor {
  const cols = a.shape.length ? a.shape[a.shape.length - 1]! : 1;
  const rows = cols > 0 ? a.t.size / cols : 0;
  const dtype = a.t.dtype;
  const x = (j: string) => loadF32('a', dtype, `base + ${j}`);
  const program: Program = {
    key: `softmax:${log}:${dtype}`,
    name: log ? 'logSoftmax' : 'softmax',
    uniforms: {
      scalars: [
        ['rows', 'u32'],
        ['cols', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${MATH_HELPERS}
${bindOutput(1, 'out', 'f32')}
${bindInput(2, 'a', storageType(dtype))}
var<workgroup> partial: array<f32, ${ROW_WG}>;
fn reduce_max(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = max(partial[lid], partial[lid + s]); }
    workgroupBarrier();
  }
  let r = partial[0];
  workgroupBarrier();
  return r;
}
fn reduce_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  let r = partial[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.rows) { return; }
  let base = row * P.cols;
  var m = f32_neg_inf();
  for (var j = lid; j < P.cols; j += ${ROW_WG}u) { m = max(m, ${x('j')}); }
  m = reduce_max(lid, m);
  var s = 0.0;
  for (var j = lid; j < P.cols; j += ${ROW_WG}u) { s += exp(${x('j')} - m); }
  s = reduce_sum(lid, s);
  ${log ? 'let ls = log(s);' : 'let inv = 1.0 / s;'}
  for (var j = lid; j < P.cols; j += ${ROW_WG}u) {
    out[base + j] = ${log ? `${x('j')} - m - ls` : `exp(${x('j')} - m) * inv`};
  }
}`,
  };
  return dispatchPerRow(ctx, program, a, ctx.alloc('float32', a.t.size), rows, cols);
}

/** Index of the first maximum along the last axis (NaN never wins), int32. */
export function argMax(ctx: KernelContext, a: TensorArg): GpuTensor {
  const cols = a.shape.length ? a.shape[a.shape.length - 1]! : 1;
  const rows = cols > 0 ? a.t.size / cols : 0;
  const dtype = a.t.dtype;
  const program: Program = {
    key: `argmax:${dtype}`,
    name: 'argMax',
    uniforms: {
      scalars: [
        ['rows', 'u32'],
        ['cols', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${MATH_HELPERS}
${bindOutput(1, 'out', 'i32')}
${bindInput(2, 'a', storageType(dtype))}
var<workgroup> bestV: array<f32, ${ROW_WG}>;
var<workgroup> bestI: array<u32, ${ROW_WG}>;
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  // w beats v when larger, or equal with a smaller index; NaN (v != v) is beaten by anything.
  return (w > v) || (w == v && j < i) || (v != v && w == w);
}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.rows) { return; }
  let base = row * P.cols;
  var v = f32_neg_inf();
  var i = 0xffffffffu;
  for (var j = lid; j < P.cols; j += ${ROW_WG}u) {
    let w = ${loadF32('a', dtype, 'base + j')};
    if (i == 0xffffffffu || better(v, i, w, j)) { v = w; i = j; }
  }
  bestV[lid] = v;
  bestI[lid] = i;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let j = bestI[lid + s];
      if (j != 0xffffffffu && (bestI[lid] == 0xffffffffu || better(bestV[lid], bestI[lid], bestV[lid + s], j))) {
        bestV[lid] = bestV[lid + s];
        bestI[lid] = j;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row] = i32(select(bestI[0], 0u, bestI[0] == 0xffffffffu)); }
}`,
  };
  return dispatchPerRow(ctx, program, a, ctx.alloc('int32', rows), rows, cols);
}

/** Runs a one-workgroup-per-row program (scalars rows, cols) of `a` into `out`. */
function dispatchPerRow(ctx: KernelContext, program: Program, a: TensorArg, out: GpuTensor, rows: number, cols: number): GpuTensor {
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [a.t.buf],
    scalars: { rows, cols },
    workgroups: grid(rows, ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}
