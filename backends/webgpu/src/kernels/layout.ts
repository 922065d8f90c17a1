/**
 * Data movement: transpose, slice, concat, cast, gather, scatterAdd. Copies move raw bits, so every dtype
 * (packed narrow ones included) keeps its exact values; a thread produces one whole 32-bit output word, so
 * packed outputs never need atomics.
 */
import { DTypeError, ShapeError, type DType } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { assertRank, grid, MAX_RANK, padTo, sizeOf, stridesOf } from '../shapes.js';
import { elementsPerWord } from '../storage.js';
import {
  bindInput,
  bindOutput,
  DIMS_ACCESSOR,
  ELEMENTWISE_WORKGROUP as WG,
  linearMain,
  loadBits,
  loadF32,
  loadI32,
  storageType,
  type BoundType,
} from '../wgsl/common.js';
import { fill, type TensorArg } from './elementwise.js';

function linearGrid(ctx: KernelContext, threads: number): [number, number] {
  return grid(Math.ceil(threads / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension);
}

/** Body that assembles output word `index` from `epw` elements whose bits `bitsOf(e)` yields. */
function packWord(dtype: DType, bitsOf: (e: string) => string): string {
  const epw = elementsPerWord(dtype);
  if (epw === 1) return `  out[index] = ${bitsOf('index')};`;
  const width = 32 / epw;
  return `  var word = 0u;
  for (var j = 0u; j < ${epw}u; j++) {
    let e = index * ${epw}u + j;
    if (e < P.n) { word = word | (${bitsOf('e')} << (j * ${width}u)); }
  }
  out[index] = word;`;
}

function wordsOf(dtype: DType, n: number): number {
  return Math.ceil(n / elementsPerWord(dtype));
}

/** out[e] = a[base + Σ coord_d(e) · srcStride_d]: transpose and slice are both this. */
function stridedCopy(
  ctx: KernelContext,
  a: TensorArg,
  outShape: readonly number[],
  srcStrides: readonly number[],
  base: number,
  op: string,
): GpuTensor {
  assertRank(outShape, op);
  const dtype = a.t.dtype;
  const n = sizeOf(outShape);
  const program: Program = {
    key: `strided-copy:${dtype}`,
    name: 'strided copy',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['words', 'u32'],
        ['rank', 'u32'],
        ['base', 'u32'],
      ],
      dims: 2 * MAX_RANK,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${DIMS_ACCESSOR}
${bindOutput(1, 'out', 'u32')}
${bindInput(2, 'a', 'u32')}
fn src_index(e: u32) -> u32 {
  var rem = e;
  var off = P.base;
  for (var dd = i32(P.rank) - 1; dd >= 0; dd--) {
    let d = u32(dd);
    off += (rem % dim(d)) * dim(${MAX_RANK}u + d);
    rem = rem / dim(d);
  }
  return off;
}
${linearMain(
  WG,
  `  if (index >= P.words) { return; }
${packWord(dtype, (e) => loadBits('a', dtype, `src_index(${e})`))}`,
)}`,
  };
  const out = ctx.alloc(dtype, n);
  const words = wordsOf(dtype, n);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [a.t.buf],
    scalars: { n, words, rank: outShape.length, base },
    dims: [...padTo(outShape, MAX_RANK, 1), ...padTo(srcStrides, MAX_RANK)],
    workgroups: linearGrid(ctx, words),
  });
  return out;
}

export function transpose(ctx: KernelContext, a: TensorArg, perm: readonly number[]): GpuTensor {
  if (perm.length !== a.shape.length || [...perm].sort((x, y) => x - y).some((p, i) => p !== i)) {
    throw new ShapeError(`webgpu transpose: perm [${perm.join(', ')}] is not a permutation of rank ${a.shape.length}`);
  }
  const strides = stridesOf(a.shape);
  return stridedCopy(
    ctx,
    a,
    perm.map((p) => a.shape[p]!),
    perm.map((p) => strides[p]!),
    0,
    'transpose',
  );
}

export function slice(ctx: KernelContext, a: TensorArg, begin: readonly number[], size: readonly number[]): GpuTensor {
  if (begin.length !== a.shape.length || size.length !== a.shape.length) {
    throw new ShapeError(`webgpu slice: begin [${begin.join(', ')}] / size [${size.join(', ')}] do not match rank ${a.shape.length}`);
  }
  a.shape.forEach((d, i) => {
    if (begin[i]! < 0 || size[i]! < 0 || begin[i]! + size[i]! > d) {
      throw new ShapeError(`webgpu slice: begin [${begin.join(', ')}] + size [${size.join(', ')}] exceeds [${a.shape.join(', ')}]`);
    }
  });
  const strides = stridesOf(a.shape);
  const base = begin.reduce((s, b, i) => s + b * strides[i]!, 0);
  return stridedCopy(ctx, a, size, strides, base, 'slice');
}

/** Inputs bound per concat dispatch; longer lists are concatenated in groups (WebGPU guarantees 8 storage bindings). */
const CONCAT_GROUP = 7;

export function concat(ctx: KernelContext, tensors: readonly TensorArg[], axis: number, outShape: readonly number[]): GpuTensor {
  if (tensors.length === 0) throw new ShapeError('webgpu concat: no tensors');
  const dtype = tensors[0]!.t.dtype;
  for (const x of tensors) {
    if (x.t.dtype !== dtype) throw new DTypeError(`webgpu concat: mixed dtypes ${dtype} and ${x.t.dtype}`);
  }
  if (tensors.length > CONCAT_GROUP) {
    const parts: TensorArg[] = [];
    for (let i = 0; i < tensors.length; i += CONCAT_GROUP) {
      const group = tensors.slice(i, i + CONCAT_GROUP);
      const shape = [...outShape];
      shape[axis] = group.reduce((s, x) => s + x.shape[axis]!, 0);
      parts.push({ t: concat(ctx, group, axis, shape), shape });
    }
    const out = concat(ctx, parts, axis, outShape);
    for (const p of parts) ctx.release(p.t);
    return out;
  }
  const k = tensors.length;
  const trailing = sizeOf(outShape.slice(axis + 1));
  const inners = tensors.map((x) => x.shape[axis]! * trailing);
  const offsets: number[] = [];
  let acc = 0;
  for (const inner of inners) {
    offsets.push(acc);
    acc += inner;
  }
  const n = sizeOf(outShape);
  const pick = tensors
    .map((_, i) => {
      const body = `return ${loadBits(`in${i}`, dtype, `row * dim(${i}u) + col - dim(${MAX_RANK + i}u)`)};`;
      return i === k - 1 ? `  ${body}` : `  if (col < dim(${MAX_RANK + i + 1}u)) { ${body} }`;
    })
    .join('\n');
  const program: Program = {
    key: `concat:${dtype}:${k}`,
    name: `concat ${k}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['words', 'u32'],
        ['outInner', 'u32'],
      ],
      dims: 2 * MAX_RANK,
    },
    outputs: 1,
    inputs: k,
    source: () => `${DIMS_ACCESSOR}
${bindOutput(1, 'out', 'u32')}
${tensors.map((_, i) => bindInput(2 + i, `in${i}`, 'u32')).join('\n')}
fn element_bits(e: u32) -> u32 {
  let row = e / P.outInner;
  let col = e % P.outInner;
${pick}
}
${linearMain(
  WG,
  `  if (index >= P.words) { return; }
${packWord(dtype, (e) => `element_bits(${e})`)}`,
)}`,
  };
  const out = ctx.alloc(dtype, n);
  const words = wordsOf(dtype, n);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: tensors.map((x) => x.t.buf),
    scalars: { n, words, outInner: acc },
    dims: [...padTo(inners, MAX_RANK), ...padTo(offsets, MAX_RANK)],
    workgroups: linearGrid(ctx, words),
  });
  return out;
}

/** WGSL expression converting element `e` of `a` (dtype `from`) to the bits of dtype `to`. */
function convertBits(from: DType, to: DType, e: string): string {
  if (from === to) return loadBits('a', from, e);
  const isIntSrc = from === 'int32' || from === 'int8' || from === 'uint8';
  const f = loadF32('a', from, e);
  switch (to) {
    case 'float32':
      return `bitcast<u32>(${f})`;
    case 'int32':
      return isIntSrc ? `bitcast<u32>(${loadI32('a', from, e)})` : `bitcast<u32>(f32_to_i32(${f}))`;
    case 'bfloat16':
      return `f32_to_bf16(${f})`;
    case 'float16':
      return `(pack2x16float(vec2<f32>(${f}, 0.0)) & 0xffffu)`;
    case 'int8':
    case 'uint8':
      return `(bitcast<u32>(${isIntSrc ? loadI32('a', from, e) : `f32_to_i32(${f})`}) & 0xffu)`;
  }
}

const CAST_HELPERS = /* wgsl */ `
fn f32_to_bf16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) | 0x40u) & 0xffffu; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn f32_to_i32(x: f32) -> i32 {
  // Like a JS Int32Array store for in-range values; NaN becomes 0.
  if (x != x) { return 0; }
  return i32(trunc(x));
}`;

export function cast(ctx: KernelContext, a: TensorArg, to: DType): GpuTensor {
  const from = a.t.dtype;
  const n = a.t.size;
  const program: Program = {
    key: `cast:${from}:${to}`,
    name: `cast ${from}→${to}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['words', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${CAST_HELPERS}
${bindOutput(1, 'out', 'u32')}
${bindInput(2, 'a', storageType(from))}
${linearMain(
  WG,
  `  if (index >= P.words) { return; }
${packWord(to, (e) => convertBits(from, to, e))}`,
)}`,
  };
  const out = ctx.alloc(to, n);
  const words = wordsOf(to, n);
  ctx.rt.dispatch({ program, outputs: [out.buf], inputs: [a.t.buf], scalars: { n, words }, workgroups: linearGrid(ctx, words) });
  return out;
}

/** WGSL for output element `index` of a gather (P.cols columns): its index `i`, column `col`, table row `r` (i32). */
export function gatherRow(idxType: DType): string {
  return `  let i = index / P.cols;
  let col = index % P.cols;
  let r = ${loadI32('idx', idxType, 'i')};`;
}

/**
 * A gather table's binding type: u32 words, or f16 for a float16 table where the device has shader-f16
 * (`KernelContext.bound`; widened exactly either way).
 */
export function gatherTableType(bound: BoundType): 'u32' | 'f16' {
  return bound === 'f16' ? 'f16' : 'u32';
}

/** Output word of a gather (int32 and float32 bits copied, narrow floats widened) from `table[row * P.cols + col]`. */
export function gatherValue(bound: BoundType): string {
  return bound === 'int32' || bound === 'float32'
    ? loadBits('table', bound, 'row * P.cols + col')
    : `bitcast<u32>(${loadF32('table', bound, 'row * P.cols + col')})`;
}

/** out[i, :] = table[indices[i], :]; rows out of range read as zeros (a GPU cannot throw). */
export function gather(ctx: KernelContext, table: TensorArg, indices: TensorArg): GpuTensor {
  if (table.shape.length !== 2) throw new ShapeError(`webgpu gather: table must be 2-D, got [${table.shape.join(', ')}]`);
  const [rows, cols] = table.shape as [number, number];
  const count = indices.t.size;
  const dtype = table.t.dtype;
  const outDType: DType = dtype === 'int32' ? 'int32' : 'float32';
  const bound = ctx.bound(dtype);
  const program: Program = {
    key: `gather:${bound}:${indices.t.dtype}`,
    name: 'gather',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['rows', 'u32'],
        ['cols', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'out', 'u32')}
${bindInput(2, 'table', gatherTableType(bound))}
${bindInput(3, 'idx', storageType(indices.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
${gatherRow(indices.t.dtype)}
  if (r < 0 || u32(r) >= P.rows) { out[index] = 0u; return; }
  let row = u32(r);
  out[index] = ${gatherValue(bound)};`,
)}`,
  };
  const n = count * cols;
  const out = ctx.alloc(outDType, n);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [table.t.buf, indices.t.buf],
    scalars: { n, rows, cols },
    workgroups: linearGrid(ctx, n),
  });
  return out;
}

/**
 * out[numRows, cols] = Σ updates[i, :] over i with indices[i] = row. Float atomics do not exist in WGSL,
 * so each add is a compare-exchange loop on the f32 bits (the order of additions is not fixed).
 */
export function scatterAdd(ctx: KernelContext, indices: TensorArg, updates: TensorArg, numRows: number): GpuTensor {
  const count = indices.t.size;
  const cols = count > 0 ? updates.t.size / count : (updates.shape[updates.shape.length - 1] ?? 1);
  if (!Number.isInteger(cols)) {
    throw new ShapeError(`webgpu scatterAdd: updates [${updates.shape.join(', ')}] do not split into ${count} rows`);
  }
  const out = fill(ctx, [numRows, cols], 0, 'float32');
  const program: Program = {
    key: `scatter-add:${indices.t.dtype}:${updates.t.dtype}`,
    name: 'scatterAdd',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['rows', 'u32'],
        ['cols', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 2,
    source: () => `@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
${bindInput(2, 'idx', storageType(indices.t.dtype))}
${bindInput(3, 'upd', storageType(updates.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let i = index / P.cols;
  let col = index % P.cols;
  let r = ${loadI32('idx', indices.t.dtype, 'i')};
  if (r < 0 || u32(r) >= P.rows) { return; }
  let v = ${loadF32('upd', updates.t.dtype, 'index')};
  let slot = u32(r) * P.cols + col;
  var old = atomicLoad(&out[slot]);
  loop {
    let res = atomicCompareExchangeWeak(&out[slot], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (res.exchanged) { break; }
    old = res.old_value;
  }`,
)}`,
  };
  const n = count * cols;
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [indices.t.buf, updates.t.buf],
    scalars: { n, rows: numRows, cols },
    workgroups: linearGrid(ctx, n),
  });
  return out;
}
