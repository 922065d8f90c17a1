/**
 * 1-D and 3-D convolutions (PyTorch's F.conv1d / F.conv3d: NCL / NCDHW inputs, OIL / OIDHW weights) built
 * on the conv2d kernels, so every backend runs them without new kernels and autograd comes from the ops
 * they are made of. Conv1d is a conv2d of height 1. Conv3d is a sum over the kernel's depth taps of conv2ds
 * whose batch holds every output depth's input slice — the composite default; a backend may provide its own
 * conv3d kernels (Backend's optional `conv3d`, `conv3dBackpropInput`, `conv3dBackpropFilter`).
 */
import type { Conv3dParams } from '../backend/backend.js';
import { ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { tidy } from '../tensor/scope.js';
import { shapeStr } from '../tensor/shape.js';
import { full, type Tensor } from '../tensor/tensor.js';
import { add } from './elementwise.js';
import { concat, narrow, reshape, transpose } from './layout.js';
import { conv2d } from './nn.js';
import { backendOf, requireFloat, wrap } from './util.js';

export type ConvDims = 1 | 2 | 3;

export interface ConvNdOptions {
  readonly stride?: number | readonly number[];
  readonly padding?: number | readonly number[];
  readonly dilation?: number | readonly number[];
  readonly groups?: number;
}

/** Per-axis hyper-parameters of an N-d convolution (one entry per spatial axis). */
export interface ConvNdParams {
  readonly stride: readonly number[];
  readonly padding: readonly number[];
  readonly dilation: readonly number[];
  readonly groups: number;
}

function perAxis(v: number | readonly number[] | undefined, dims: number, d: number, what: string): number[] {
  if (v === undefined) return Array(dims).fill(d);
  if (typeof v === 'number') return Array(dims).fill(v);
  if (v.length !== dims) throw new ShapeError(`conv${dims}d: ${what} [${v.join(', ')}] needs ${dims} entries`);
  return [...v];
}

export function convNdParams(dims: ConvDims, o: ConvNdOptions = {}): ConvNdParams {
  return {
    stride: perAxis(o.stride, dims, 1, 'stride'),
    padding: perAxis(o.padding, dims, 0, 'padding'),
    dilation: perAxis(o.dilation, dims, 1, 'dilation'),
    groups: o.groups ?? 1,
  };
}

function checkShapes(dims: ConvDims, x: Tensor, w: Tensor, p: ConvNdParams): number[] {
  const rank = dims + 2;
  const op = `conv${dims}d`;
  if (x.rank !== rank || w.rank !== rank) {
    throw new ShapeError(`${op}: input ${shapeStr(x.shape)} and weight ${shapeStr(w.shape)} must be ${rank}-D`);
  }
  if (x.shape[1] !== w.shape[1]! * p.groups || w.shape[0]! % p.groups !== 0) {
    throw new ShapeError(`${op}: input ${shapeStr(x.shape)} does not fit weight ${shapeStr(w.shape)} with groups ${p.groups}`);
  }
  const out = x.shape
    .slice(2)
    .map((n, i) => Math.floor((n + 2 * p.padding[i]! - p.dilation[i]! * (w.shape[2 + i]! - 1) - 1) / p.stride[i]!) + 1);
  if (out.some((n) => n <= 0)) throw new ShapeError(`${op}: input ${shapeStr(x.shape)} too small for kernel ${shapeStr(w.shape)}`);
  return [x.shape[0]!, w.shape[0]!, ...out];
}

const biasView = (bias: Tensor, dims: number) => reshape(bias, [1, -1, ...Array(dims).fill(1)]);

/** 1-D convolution: x [N, C, L], weight [O, C/groups, K], bias [O] optional. */
export function conv1d(x: Tensor, w: Tensor, bias: Tensor | null = null, options: ConvNdOptions = {}): Tensor {
  return tidy(() => {
    const p = convNdParams(1, options);
    const [n, o, l] = checkShapes(1, x, w, p) as [number, number, number];
    const y = conv2d(reshape(x, [x.shape[0]!, x.shape[1]!, 1, x.shape[2]!]), reshape(w, [w.shape[0]!, w.shape[1]!, 1, w.shape[2]!]), null, {
      stride: [1, p.stride[0]!],
      padding: [0, p.padding[0]!],
      dilation: [1, p.dilation[0]!],
      groups: p.groups,
    });
    const out = reshape(y, [n, o, l]);
    return bias ? add(out, biasView(bias, 1)) : out;
  });
}

/**
 * 3-D convolution: x [N, C, D, H, W], weight [O, C/groups, KD, KH, KW], bias [O] optional. A backend with the
 * optional conv3d kernels (all three) runs them; otherwise the composite below.
 */
export function conv3d(x: Tensor, w: Tensor, bias: Tensor | null = null, options: ConvNdOptions = {}): Tensor {
  return tidy(() => {
    const p = convNdParams(3, options);
    const outShape = checkShapes(3, x, w, p);
    const be = backendOf('conv3d', x, w);
    if (be.conv3d && be.conv3dBackpropInput && be.conv3dBackpropFilter) {
      requireFloat('conv3d', x);
      const p3: Conv3dParams = {
        stride: p.stride as [number, number, number],
        padding: p.padding as [number, number, number],
        dilation: p.dilation as [number, number, number],
        groups: p.groups,
      };
      const y = wrap(be, be.conv3d(x.info, w.info, p3, outShape), outShape, 'float32');
      const out = record('conv3d', y, [x, w], [x, w], (g, [sx, sw]) => [
        x.requiresGrad ? wrap(g.backend, g.backend.conv3dBackpropInput!(g.info, sw!.info, p3, x.shape), x.shape, 'float32') : null,
        w.requiresGrad ? wrap(g.backend, g.backend.conv3dBackpropFilter!(sx!.info, g.info, p3, w.shape), w.shape, 'float32') : null,
      ]);
      return bias ? add(out, biasView(bias, 3)) : out;
    }
    const [n, o, od, oh, ow] = outShape as [number, number, number, number, number];
    const [, c, , h, wd] = x.shape as [number, number, number, number, number];
    const [, cg, kd, kh, kw] = w.shape as [number, number, number, number, number];
    const [sd, pd, dd] = [p.stride[0]!, p.padding[0]!, p.dilation[0]!];
    // Depth padding as zero slices, so every tap reads a valid slice.
    const pad = () => full([n, c, pd, h, wd], 0, { backend: x.backend });
    const xp = pd > 0 ? concat([pad(), x, pad()], 2) : x;
    let acc: Tensor | null = null;
    for (let t = 0; t < kd; t++) {
      // Batch [od·N, C, H, W]: output depth z reads input slice z·sd + t·dd.
      const slices = Array.from({ length: od }, (_, z) => reshape(narrow(xp, 2, z * sd + t * dd, 1), [n, c, h, wd]));
      const tap = reshape(narrow(w, 2, t, 1), [o, cg, kh, kw]);
      const y = conv2d(slices.length === 1 ? slices[0]! : concat(slices, 0), tap, null, {
        stride: [p.stride[1]!, p.stride[2]!],
        padding: [p.padding[1]!, p.padding[2]!],
        dilation: [p.dilation[1]!, p.dilation[2]!],
        groups: p.groups,
      });
      acc = acc ? add(acc, y) : y;
    }
    const out = transpose(reshape(acc!, [od, n, o, oh, ow]), [1, 2, 0, 3, 4]);
    return bias ? add(out, biasView(bias, 3)) : out;
  });
}

/** The N-d convolution for `dims` spatial axes. */
export function convNd(dims: ConvDims, x: Tensor, w: Tensor, bias: Tensor | null, options: ConvNdOptions): Tensor {
  if (dims === 1) return conv1d(x, w, bias, options);
  if (dims === 3) return conv3d(x, w, bias, options);
  return conv2d(x, w, bias, options as Parameters<typeof conv2d>[3]);
}
