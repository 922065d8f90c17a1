/**
 * One-thread-per-element kernels: fill, unary, binary, affine, where. Inputs of any storage dtype are
 * widened while loaded; broadcasting walks the output index through per-input strides held in uniforms.
 */
import { DTypeError, type BinaryOp, type DType, type UnaryOp } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { broadcastStrides, grid, MAX_RANK, padTo, sameShape, sizeOf, assertRank } from '../shapes.js';
import { elementsPerWord } from '../storage.js';
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
import { MATH_HELPERS } from '../wgsl/math.js';

export interface TensorArg {
  readonly t: GpuTensor;
  readonly shape: readonly number[];
}

function linearGrid(ctx: KernelContext, threads: number): [number, number] {
  return grid(Math.ceil(threads / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension);
}

// ---- fill

const fillProgram: Program = {
  key: 'fill',
  name: 'fill',
  uniforms: {
    scalars: [
      ['n', 'u32'],
      ['word', 'u32'],
    ],
    dims: 0,
  },
  outputs: 1,
  inputs: 0,
  source: () => `${bindOutput(1, 'out', 'u32')}
${linearMain(WG, '  if (index >= P.n) { return; }\n  out[index] = P.word;')}`,
};

/** The 32-bit word repeating `value` in `dtype`'s packed storage. */
function fillWord(value: number, dtype: DType): number {
  const epw = elementsPerWord(dtype);
  const view = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < epw; i++) {
    switch (dtype) {
      case 'float32':
        view.setFloat32(0, value, true);
        break;
      case 'int32':
        view.setInt32(0, value, true);
        break;
      case 'bfloat16': {
        const f = new Float32Array([value]);
        const x = new Uint32Array(f.buffer)[0]!;
        const bits = Number.isNaN(value) ? 0x7fc0 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
        view.setUint16(i * 2, bits, true);
        break;
      }
      case 'float16':
        view.setUint16(i * 2, f32ToF16Bits(value), true);
        break;
      case 'int8':
        view.setInt8(i, value);
        break;
      case 'uint8':
        view.setUint8(i, value);
        break;
    }
  }
  return view.getUint32(0, true);
}

function f32ToF16Bits(v: number): number {
  // Math.fround handles rounding to f32 first; f16 via DataView is not available on Node 20.
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) return sign | (exp < -10 ? 0 : Math.round((mant | 0x800000) / 2 ** (14 - exp)));
  const r = (mant >>> 13) + ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) === 0x1000 && (mant >>> 13) & 1) ? 1 : 0);
  return sign | ((exp << 10) + r);
}

export function fill(ctx: KernelContext, shape: readonly number[], value: number, dtype: DType): GpuTensor {
  const size = sizeOf(shape);
  const out = ctx.alloc(dtype, size);
  const words = Math.ceil(size / elementsPerWord(dtype));
  ctx.rt.dispatch({
    program: fillProgram,
    outputs: [out.buf],
    inputs: [],
    scalars: { n: words, word: fillWord(value, dtype) },
    workgroups: linearGrid(ctx, words),
  });
  return out;
}

// ---- unary

const INT_PRESERVING_UNARY: ReadonlySet<UnaryOp> = new Set(['neg', 'abs', 'square', 'relu', 'step', 'sign']);

export function unaryOutDType(op: UnaryOp, dtype: DType): DType {
  return dtype === 'int32' && INT_PRESERVING_UNARY.has(op) ? 'int32' : 'float32';
}

function unaryExprF32(op: UnaryOp): string {
  switch (op) {
    case 'neg':
      return '-x';
    case 'abs':
      return 'abs(x)';
    case 'exp':
      return 'exp(x)';
    case 'log':
      return 'log(x)';
    case 'sqrt':
      return 'sqrt(x)';
    case 'rsqrt':
      return 'inverseSqrt(x)';
    case 'reciprocal':
      return '1.0 / x';
    case 'square':
      return 'x * x';
    case 'relu':
      return 'select(0.0, x, x > 0.0 || is_nan(x))';
    case 'step':
      return 'select(0.0, 1.0, x > 0.0)';
    case 'sigmoid':
      return 'sigmoid_f(x)';
    case 'silu':
      return 'x * sigmoid_f(x)';
    case 'gelu':
      return 'gelu_erf(x)';
    case 'geluTanh':
      return 'gelu_tanh(x)';
    case 'tanh':
      return 'tanh_f(x)';
    case 'erf':
      return 'erf_f(x)';
    case 'sign':
      return 'sign(x)';
    case 'sin':
      return 'sin(x)';
    case 'cos':
      return 'cos(x)';
    case 'isFinite':
      return 'select(0.0, 1.0, (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u)';
  }
}

function unaryExprI32(op: UnaryOp): string {
  switch (op) {
    case 'neg':
      return '-x';
    case 'abs':
      return 'abs(x)';
    case 'square':
      return 'x * x';
    case 'relu':
      return 'max(x, 0)';
    case 'step':
      return 'select(0, 1, x > 0)';
    case 'sign':
      return 'sign(x)';
    default:
      throw new DTypeError(`webgpu unary '${op}' has no int32 form`);
  }
}

export function unary(ctx: KernelContext, op: UnaryOp, a: TensorArg): GpuTensor {
  const outDType = unaryOutDType(op, a.t.dtype);
  const int = outDType === 'int32';
  const program: Program = {
    key: `unary:${op}:${a.t.dtype}`,
    name: `unary ${op}`,
    uniforms: { scalars: [['n', 'u32']], dims: 0 },
    outputs: 1,
    inputs: 1,
    source: () => `${MATH_HELPERS}
${bindOutput(1, 'out', int ? 'i32' : 'f32')}
${bindInput(2, 'a', storageType(a.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let x = ${int ? loadI32('a', a.t.dtype, 'index') : loadF32('a', a.t.dtype, 'index')};
  out[index] = ${int ? unaryExprI32(op) : unaryExprF32(op)};`,
)}`,
  };
  const out = ctx.alloc(outDType, a.t.size);
  ctx.rt.dispatch({ program, outputs: [out.buf], inputs: [a.t.buf], scalars: { n: a.t.size }, workgroups: linearGrid(ctx, a.t.size) });
  return out;
}

// ---- affine

export function affine(ctx: KernelContext, a: TensorArg, scale: number, offset: number): GpuTensor {
  const int = a.t.dtype === 'int32';
  const program: Program = {
    key: `affine:${a.t.dtype}`,
    name: 'affine',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['scale', 'f32'],
        ['offset', 'f32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 1,
    source: () => `${bindOutput(1, 'out', int ? 'i32' : 'f32')}
${bindInput(2, 'a', storageType(a.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let y = fma(${loadF32('a', a.t.dtype, 'index')}, P.scale, P.offset);
  out[index] = ${int ? 'i32(y)' : 'y'};`,
)}`,
  };
  const out = ctx.alloc(int ? 'int32' : 'float32', a.t.size);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [a.t.buf],
    scalars: { n: a.t.size, scale, offset },
    workgroups: linearGrid(ctx, a.t.size),
  });
  return out;
}

// ---- binary and where (broadcasting)

const COMPARISONS: ReadonlySet<BinaryOp> = new Set(['greater', 'equal']);

export function binaryOutDType(op: BinaryOp, a: DType, b: DType): DType {
  if (COMPARISONS.has(op)) return 'float32';
  return a === 'int32' && b === 'int32' ? 'int32' : 'float32';
}

function binaryExpr(op: BinaryOp, int: boolean): string {
  if (int) {
    switch (op) {
      case 'add':
        return 'x + y';
      case 'sub':
        return 'x - y';
      case 'mul':
        return 'x * y';
      case 'div':
        return 'select(x / y, 0, y == 0)';
      case 'max':
        return 'max(x, y)';
      case 'min':
        return 'min(x, y)';
      case 'pow':
        return 'i32(pow_f(f32(x), f32(y)))';
      default:
        throw new DTypeError(`webgpu binary '${op}' has no int32 form`);
    }
  }
  switch (op) {
    case 'add':
      return 'x + y';
    case 'sub':
      return 'x - y';
    case 'mul':
      return 'x * y';
    case 'div':
      return 'x / y';
    case 'max':
      return 'max_nan(x, y)';
    case 'min':
      return 'min_nan(x, y)';
    case 'pow':
      return 'pow_f(x, y)';
    case 'greater':
      return 'select(0.0, 1.0, x > y)';
    case 'equal':
      return 'select(0.0, 1.0, x == y)';
  }
}

/**
 * Index mapping for `inputs` broadcast inputs: 'same' when every input has the output's shape (the flat
 * index is shared), else the general walk over up to MAX_RANK axes.
 */
function broadcastPrologue(general: boolean, inputs: number): string {
  if (!general) return Array.from({ length: inputs }, (_, k) => `  let i${k} = index;`).join('\n');
  const decl = Array.from({ length: inputs }, (_, k) => `  var i${k} = 0u;`).join('\n');
  const acc = Array.from({ length: inputs }, (_, k) => `    i${k} += c * dim(${(k + 1) * MAX_RANK}u + d);`).join('\n');
  return `${decl}
  var rem = index;
  for (var dd = i32(P.rank) - 1; dd >= 0; dd--) {
    let d = u32(dd);
    let s = dim(d);
    let c = rem % s;
    rem = rem / s;
${acc}
  }`;
}

function broadcastDims(outShape: readonly number[], inputs: readonly TensorArg[], op: string): number[] {
  const dims = padTo(outShape, MAX_RANK, 1);
  for (const x of inputs) dims.push(...padTo(broadcastStrides(x.shape, outShape, op), MAX_RANK));
  return dims;
}

export function binary(ctx: KernelContext, op: BinaryOp, a: TensorArg, b: TensorArg, outShape: readonly number[]): GpuTensor {
  assertRank(outShape, `binary ${op}`);
  const outDType = binaryOutDType(op, a.t.dtype, b.t.dtype);
  const int = a.t.dtype === 'int32' && b.t.dtype === 'int32' && !COMPARISONS.has(op);
  const general = !sameShape(a.shape, outShape) || !sameShape(b.shape, outShape);
  const load = (v: string, t: GpuTensor, i: string) => (int ? loadI32(v, t.dtype, i) : loadF32(v, t.dtype, i));
  const cmpInt = COMPARISONS.has(op) && a.t.dtype === 'int32' && b.t.dtype === 'int32';
  const program: Program = {
    key: `binary:${op}:${a.t.dtype}:${b.t.dtype}:${general ? 'bcast' : 'same'}${cmpInt ? ':icmp' : ''}`,
    name: `binary ${op}`,
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['rank', 'u32'],
      ],
      dims: general ? 3 * MAX_RANK : 0,
    },
    outputs: 1,
    inputs: 2,
    source: () => `${MATH_HELPERS}
${general ? DIMS_ACCESSOR : ''}
${bindOutput(1, 'out', outDType === 'int32' ? 'i32' : 'f32')}
${bindInput(2, 'a', storageType(a.t.dtype))}
${bindInput(3, 'b', storageType(b.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
${broadcastPrologue(general, 2)}
  let x = ${cmpInt ? loadI32('a', a.t.dtype, 'i0') : load('a', a.t, 'i0')};
  let y = ${cmpInt ? loadI32('b', b.t.dtype, 'i1') : load('b', b.t, 'i1')};
  out[index] = ${binaryExpr(op, int)};`,
)}`,
  };
  const n = sizeOf(outShape);
  const out = ctx.alloc(outDType, n);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [a.t.buf, b.t.buf],
    scalars: { n, rank: outShape.length },
    dims: general ? broadcastDims(outShape, [a, b], `binary ${op}`) : [],
    workgroups: linearGrid(ctx, n),
  });
  return out;
}

export function where(ctx: KernelContext, cond: TensorArg, a: TensorArg, b: TensorArg, outShape: readonly number[]): GpuTensor {
  assertRank(outShape, 'where');
  const int = a.t.dtype === 'int32' && b.t.dtype === 'int32';
  const general = [cond, a, b].some((x) => !sameShape(x.shape, outShape));
  const load = (v: string, t: GpuTensor, i: string) => (int ? loadI32(v, t.dtype, i) : loadF32(v, t.dtype, i));
  const program: Program = {
    key: `where:${cond.t.dtype}:${a.t.dtype}:${b.t.dtype}:${general ? 'bcast' : 'same'}`,
    name: 'where',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['rank', 'u32'],
      ],
      dims: general ? 4 * MAX_RANK : 0,
    },
    outputs: 1,
    inputs: 3,
    source: () => `${general ? DIMS_ACCESSOR : ''}
${bindOutput(1, 'out', int ? 'i32' : 'f32')}
${bindInput(2, 'c', storageType(cond.t.dtype))}
${bindInput(3, 'a', storageType(a.t.dtype))}
${bindInput(4, 'b', storageType(b.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
${broadcastPrologue(general, 3)}
  out[index] = select(${load('b', b.t, 'i2')}, ${load('a', a.t, 'i1')}, ${loadF32('c', cond.t.dtype, 'i0')} != 0.0);`,
)}`,
  };
  const n = sizeOf(outShape);
  const out = ctx.alloc(int ? 'int32' : 'float32', n);
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: [cond.t.buf, a.t.buf, b.t.buf],
    scalars: { n, rank: outShape.length },
    dims: general ? broadcastDims(outShape, [cond, a, b], 'where') : [],
    workgroups: linearGrid(ctx, n),
  });
  return out;
}
