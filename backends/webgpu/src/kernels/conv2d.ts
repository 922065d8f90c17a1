/**
 * Direct NCHW/OIHW convolution and its two gradients, one thread per output element. DoRA's convolutions
 * are small (adapters on vision layers), so clarity wins over an im2col + matmul pipeline here.
 */
import { ShapeError, type Conv2dParams } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { grid, sizeOf } from '../shapes.js';
import { bindInput, bindOutput, ELEMENTWISE_WORKGROUP as WG, linearMain, loadF32, storageType } from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';

const CONV_UNIFORMS = {
  scalars: [
    ['n', 'u32'],
    ['N', 'u32'],
    ['C', 'u32'],
    ['H', 'u32'],
    ['W', 'u32'],
    ['O', 'u32'],
    ['OH', 'u32'],
    ['OW', 'u32'],
    ['KH', 'u32'],
    ['KW', 'u32'],
    ['sh', 'u32'],
    ['sw', 'u32'],
    ['ph', 'u32'],
    ['pw', 'u32'],
    ['dh', 'u32'],
    ['dw', 'u32'],
    ['groups', 'u32'],
    ['cpg', 'u32'],
    ['opg', 'u32'],
  ],
  dims: 0,
} as const;

interface ConvGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  OH: number;
  OW: number;
  KH: number;
  KW: number;
}

function geometry(
  xShape: readonly number[],
  wShape: readonly number[],
  yShape: readonly number[],
  p: Conv2dParams,
  op: string,
): ConvGeometry {
  if (xShape.length !== 4 || wShape.length !== 4 || yShape.length !== 4) {
    throw new ShapeError(`webgpu ${op}: expects 4-D x, w, y; got [${xShape.join(', ')}], [${wShape.join(', ')}], [${yShape.join(', ')}]`);
  }
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [O, Cg, KH, KW] = wShape as [number, number, number, number];
  const [, , OH, OW] = yShape as [number, number, number, number];
  if (C !== Cg * p.groups || O % p.groups !== 0) {
    throw new ShapeError(`webgpu ${op}: x [${xShape.join(', ')}] and w [${wShape.join(', ')}] disagree for groups=${p.groups}`);
  }
  return { N, C, H, W, O, OH, OW, KH, KW };
}

function scalars(g: ConvGeometry, p: Conv2dParams, n: number): Record<string, number> {
  return {
    n,
    N: g.N,
    C: g.C,
    H: g.H,
    W: g.W,
    O: g.O,
    OH: g.OH,
    OW: g.OW,
    KH: g.KH,
    KW: g.KW,
    sh: p.stride[0],
    sw: p.stride[1],
    ph: p.padding[0],
    pw: p.padding[1],
    dh: p.dilation[0],
    dw: p.dilation[1],
    groups: p.groups,
    cpg: g.C / p.groups,
    opg: g.O / p.groups,
  };
}

function run(ctx: KernelContext, program: Program, out: GpuTensor, inputs: GpuTensor[], s: Record<string, number>): GpuTensor {
  ctx.rt.dispatch({
    program,
    outputs: [out.buf],
    inputs: inputs.map((t) => t.buf),
    scalars: s,
    workgroups: grid(Math.ceil(s.n! / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  return out;
}

export function conv2d(ctx: KernelContext, x: TensorArg, w: TensorArg, p: Conv2dParams, outShape: readonly number[]): GpuTensor {
  const g = geometry(x.shape, w.shape, outShape, p, 'conv2d');
  const program: Program = {
    key: `conv2d:${x.t.dtype}:${w.t.dtype}`,
    name: 'conv2d',
    uniforms: CONV_UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'y', 'f32')}
${bindInput(2, 'x', storageType(x.t.dtype))}
${bindInput(3, 'w', storageType(w.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let ow = index % P.OW;
  let oh = (index / P.OW) % P.OH;
  let o = (index / (P.OW * P.OH)) % P.O;
  let b = index / (P.OW * P.OH * P.O);
  let c0 = (o / P.opg) * P.cpg;
  var s = 0.0;
  for (var c = 0u; c < P.cpg; c++) {
    for (var kh = 0u; kh < P.KH; kh++) {
      let ih = i32(oh * P.sh + kh * P.dh) - i32(P.ph);
      if (ih < 0 || ih >= i32(P.H)) { continue; }
      for (var kw = 0u; kw < P.KW; kw++) {
        let iw = i32(ow * P.sw + kw * P.dw) - i32(P.pw);
        if (iw < 0 || iw >= i32(P.W)) { continue; }
        let xi = ((b * P.C + c0 + c) * P.H + u32(ih)) * P.W + u32(iw);
        let wi = ((o * P.cpg + c) * P.KH + kh) * P.KW + kw;
        s = fma(${loadF32('x', x.t.dtype, 'xi')}, ${loadF32('w', w.t.dtype, 'wi')}, s);
      }
    }
  }
  y[index] = s;`,
)}`,
  };
  const n = sizeOf(outShape);
  return run(ctx, program, ctx.alloc('float32', n), [x.t, w.t], scalars(g, p, n));
}

export function conv2dBackpropInput(
  ctx: KernelContext,
  dy: TensorArg,
  w: TensorArg,
  p: Conv2dParams,
  xShape: readonly number[],
): GpuTensor {
  const g = geometry(xShape, w.shape, dy.shape, p, 'conv2dBackpropInput');
  const program: Program = {
    key: `conv2d-dx:${dy.t.dtype}:${w.t.dtype}`,
    name: 'conv2d backprop input',
    uniforms: CONV_UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'dx', 'f32')}
${bindInput(2, 'dy', storageType(dy.t.dtype))}
${bindInput(3, 'w', storageType(w.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let iw = index % P.W;
  let ih = (index / P.W) % P.H;
  let c = (index / (P.W * P.H)) % P.C;
  let b = index / (P.W * P.H * P.C);
  let grp = c / P.cpg;
  let cl = c % P.cpg;
  var s = 0.0;
  for (var ol = 0u; ol < P.opg; ol++) {
    let o = grp * P.opg + ol;
    for (var kh = 0u; kh < P.KH; kh++) {
      let th = i32(ih + P.ph) - i32(kh * P.dh);
      if (th < 0 || (u32(th) % P.sh) != 0u) { continue; }
      let oh = u32(th) / P.sh;
      if (oh >= P.OH) { continue; }
      for (var kw = 0u; kw < P.KW; kw++) {
        let tw = i32(iw + P.pw) - i32(kw * P.dw);
        if (tw < 0 || (u32(tw) % P.sw) != 0u) { continue; }
        let ow = u32(tw) / P.sw;
        if (ow >= P.OW) { continue; }
        let yi = ((b * P.O + o) * P.OH + oh) * P.OW + ow;
        let wi = ((o * P.cpg + cl) * P.KH + kh) * P.KW + kw;
        s = fma(${loadF32('dy', dy.t.dtype, 'yi')}, ${loadF32('w', w.t.dtype, 'wi')}, s);
      }
    }
  }
  dx[index] = s;`,
)}`,
  };
  const n = sizeOf(xShape);
  return run(ctx, program, ctx.alloc('float32', n), [dy.t, w.t], scalars(g, p, n));
}

export function conv2dBackpropFilter(
  ctx: KernelContext,
  x: TensorArg,
  dy: TensorArg,
  p: Conv2dParams,
  wShape: readonly number[],
): GpuTensor {
  const g = geometry(x.shape, wShape, dy.shape, p, 'conv2dBackpropFilter');
  const program: Program = {
    key: `conv2d-dw:${x.t.dtype}:${dy.t.dtype}`,
    name: 'conv2d backprop filter',
    uniforms: CONV_UNIFORMS,
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'dw', 'f32')}
${bindInput(2, 'x', storageType(x.t.dtype))}
${bindInput(3, 'dy', storageType(dy.t.dtype))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let kw = index % P.KW;
  let kh = (index / P.KW) % P.KH;
  let cl = (index / (P.KW * P.KH)) % P.cpg;
  let o = index / (P.KW * P.KH * P.cpg);
  let c = (o / P.opg) * P.cpg + cl;
  var s = 0.0;
  for (var b = 0u; b < P.N; b++) {
    for (var oh = 0u; oh < P.OH; oh++) {
      let ih = i32(oh * P.sh + kh * P.dh) - i32(P.ph);
      if (ih < 0 || ih >= i32(P.H)) { continue; }
      for (var ow = 0u; ow < P.OW; ow++) {
        let iw = i32(ow * P.sw + kw * P.dw) - i32(P.pw);
        if (iw < 0 || iw >= i32(P.W)) { continue; }
        let xi = ((b * P.C + c) * P.H + u32(ih)) * P.W + u32(iw);
        let yi = ((b * P.O + o) * P.OH + oh) * P.OW + ow;
        s = fma(${loadF32('x', x.t.dtype, 'xi')}, ${loadF32('dy', dy.t.dtype, 'yi')}, s);
      }
    }
  }
  dw[index] = s;`,
)}`,
  };
  const n = sizeOf(wShape);
  return run(ctx, program, ctx.alloc('float32', n), [x.t, dy.t], scalars(g, p, n));
}
