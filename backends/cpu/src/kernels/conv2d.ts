/**
 * conv2d (NCHW activations, OIHW weights, as PyTorch) and both of its gradients, as im2col/col2im around
 * the GEMM: per image and group, out = W_g · cols, dcols = W_gᵀ · dy, dW_g += dy · colsᵀ.
 */
import { type Conv2dParams, sameShape, ShapeError, shapeStr } from '@dorajs/core';
import { gemm } from './gemm.js';

/**
 * Where the conv kernels get their GEMM and their im2col buffer: the typed-array GEMM and a fresh array by
 * default; the wasm backend passes its GEMM and heap scratch so the products run in wasm on heap views.
 */
export interface ConvEnv {
  readonly gemm: typeof gemm;
  readonly im2col: typeof im2col;
  readonly col2im: typeof col2im;
  /** A zeroed or dirty buffer of n floats (im2col overwrites it); `free` gives it back. */
  scratch(n: number): Float32Array;
  free(buffer: Float32Array): void;
}

export const JS_CONV_ENV: ConvEnv = { gemm, im2col, col2im, scratch: (n) => new Float32Array(n), free: () => undefined };

export interface ConvGeometry {
  readonly n: number;
  readonly c: number;
  readonly h: number;
  readonly w: number;
  readonly o: number;
  readonly kh: number;
  readonly kw: number;
  readonly oh: number;
  readonly ow: number;
  readonly groups: number;
  /** Input channels per group. */
  readonly cg: number;
  /** Output channels per group. */
  readonly og: number;
  readonly p: Conv2dParams;
}

/**
 * Validates the shapes of one conv2d call. `given` is the shape the caller claims for the tensor the kernel
 * produces (`which` of 'y', 'x' or 'w'); the other two shapes are the kernel's inputs.
 */
export function convGeometry(
  op: string,
  xShape: readonly number[],
  wShape: readonly number[],
  p: Conv2dParams,
  yShape: readonly number[] | null,
): ConvGeometry {
  const what = () =>
    `x ${shapeStr(xShape)}, w ${shapeStr(wShape)}, stride ${p.stride}, padding ${p.padding}, dilation ${p.dilation}, groups ${p.groups}`;
  if (xShape.length !== 4 || wShape.length !== 4) throw new ShapeError(`cpu ${op}: x and w must be 4-D (NCHW, OIHW): ${what()}`);
  const [n, c, h, w] = xShape as [number, number, number, number];
  const [o, cg, kh, kw] = wShape as [number, number, number, number];
  const { stride, padding, dilation, groups } = p;
  const positive = (v: number) => Number.isInteger(v) && v > 0;
  if (!positive(groups) || !stride.every(positive) || !dilation.every(positive) || !padding.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new ShapeError(`cpu ${op}: stride, dilation and groups must be positive integers and padding a non-negative one: ${what()}`);
  }
  if (c !== cg * groups || o % groups !== 0) {
    throw new ShapeError(
      `cpu ${op}: ${c} input channels and ${o} output channels do not split into ${groups} groups of ${cg} inputs: ${what()}`,
    );
  }
  const oh = Math.floor((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const ow = Math.floor((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  if (oh <= 0 || ow <= 0) throw new ShapeError(`cpu ${op}: the kernel does not fit the padded input: ${what()}`);
  if (yShape && !sameShape(yShape, [n, o, oh, ow])) {
    throw new ShapeError(`cpu ${op}: output is ${shapeStr([n, o, oh, ow])}, not ${shapeStr(yShape)}: ${what()}`);
  }
  return { n, c, h, w, o, kh, kw, oh, ow, groups, cg, og: o / groups, p };
}

/** True when cols would equal the input itself (1×1 kernel, stride 1, no padding). */
function isPointwise(g: ConvGeometry): boolean {
  const { p } = g;
  return g.kh === 1 && g.kw === 1 && p.stride[0] === 1 && p.stride[1] === 1 && p.padding[0] === 0 && p.padding[1] === 0;
}

/**
 * The traversal im2col and col2im share: for every column row (c, i, j) and output row oy, `visit(q, src, x0)`
 * with q the index in cols of (row, oy, 0), src the index in x of input row y = oy·sh − ph + i·dh (−1 when y
 * is outside the image), and x0 = j·dw − pw the input column of ox = 0.
 */
function forEachColsRow(g: ConvGeometry, xOffset: number, visit: (q: number, src: number, x0: number) => void): void {
  const { cg, h, w, kh, kw, oh, ow, p } = g;
  const [sh] = p.stride;
  const [ph, pw] = p.padding;
  const [dh, dw] = p.dilation;
  let row = 0;
  for (let c = 0; c < cg; c++) {
    const plane = xOffset + c * h * w;
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, row++) {
        for (let oy = 0, q = row * oh * ow; oy < oh; oy++, q += ow) {
          const y = oy * sh - ph + i * dh;
          visit(q, y < 0 || y >= h ? -1 : plane + y * w, j * dw - pw);
        }
      }
    }
  }
}

/** cols[(c·KH + i)·KW + j, oy·OW + ox] = x[c, oy·sh − ph + i·dh, ox·sw − pw + j·dw] (0 outside). */
export function im2col(x: Float32Array, xOffset: number, g: ConvGeometry, cols: Float32Array): void {
  const { w, ow } = g;
  const sw = g.p.stride[1];
  forEachColsRow(g, xOffset, (q, src, x0) => {
    if (src < 0) cols.fill(0, q, q + ow);
    else for (let ox = 0, xx = x0; ox < ow; ox++, xx += sw, q++) cols[q] = xx >= 0 && xx < w ? x[src + xx]! : 0;
  });
}

/** The adjoint of im2col: dx[c, y, x] += every cols entry that was read from it. */
export function col2im(cols: Float32Array, g: ConvGeometry, dx: Float32Array, dxOffset: number): void {
  const { w, ow } = g;
  const sw = g.p.stride[1];
  forEachColsRow(g, dxOffset, (q, dst, x0) => {
    if (dst < 0) return;
    for (let ox = 0, xx = x0; ox < ow; ox++, xx += sw, q++) if (xx >= 0 && xx < w) dx[dst + xx]! += cols[q]!;
  });
}

/** Per (image, group) of a conv: offsets and sizes every pass needs, plus the im2col scratch (null for 1×1). */
interface GroupStep {
  readonly b: number;
  readonly gi: number;
  /** Offset of this image's group of input channels in x (or dx). */
  readonly xOffset: number;
  /** Offset of this image's group of output channels in y (or dy). */
  readonly yOffset: number;
  /** Offset of this group's filters in W (or dW). */
  readonly wOffset: number;
  readonly kDim: number;
  readonly spatial: number;
  readonly cols: Float32Array | null;
}

/** The loop the three conv passes share: every image and group, one scratch buffer for the im2col columns. */
function forEachImageGroup(g: ConvGeometry, env: ConvEnv, body: (s: GroupStep) => void): void {
  const { n, c, h, w, o, og, cg, kh, kw, oh, ow, groups } = g;
  const kDim = cg * kh * kw;
  const spatial = oh * ow;
  const cols = isPointwise(g) ? null : env.scratch(kDim * spatial);
  try {
    for (let b = 0; b < n; b++) {
      for (let gi = 0; gi < groups; gi++) {
        body({
          b,
          gi,
          xOffset: (b * c + gi * cg) * h * w,
          yOffset: (b * o + gi * og) * spatial,
          wOffset: gi * og * kDim,
          kDim,
          spatial,
          cols,
        });
      }
    }
  } finally {
    if (cols) env.free(cols);
  }
}

export function conv2dForward(x: Float32Array, wt: Float32Array, g: ConvGeometry, out: Float32Array, env: ConvEnv = JS_CONV_ENV): void {
  forEachImageGroup(g, env, ({ xOffset, yOffset, wOffset, kDim, spatial, cols }) => {
    if (cols) env.im2col(x, xOffset, g, cols);
    const B = cols
      ? { data: cols, offset: 0, rowStride: spatial, colStride: 1 }
      : { data: x, offset: xOffset, rowStride: spatial, colStride: 1 };
    env.gemm(g.og, spatial, kDim, { data: wt, offset: wOffset, rowStride: kDim, colStride: 1 }, B, out, yOffset, spatial, false);
  });
}

export function conv2dInputGrad(dy: Float32Array, wt: Float32Array, g: ConvGeometry, dx: Float32Array, env: ConvEnv = JS_CONV_ENV): void {
  forEachImageGroup(g, env, ({ xOffset, yOffset, wOffset, kDim, spatial, cols }) => {
    const A = { data: wt, offset: wOffset, rowStride: 1, colStride: kDim }; // W_gᵀ
    const B = { data: dy, offset: yOffset, rowStride: spatial, colStride: 1 };
    if (cols) {
      env.gemm(kDim, spatial, g.og, A, B, cols, 0, spatial, false);
      env.col2im(cols, g, dx, xOffset);
    } else {
      env.gemm(kDim, spatial, g.og, A, B, dx, xOffset, spatial, false);
    }
  });
}

export function conv2dFilterGrad(x: Float32Array, dy: Float32Array, g: ConvGeometry, dw: Float32Array, env: ConvEnv = JS_CONV_ENV): void {
  forEachImageGroup(g, env, ({ b, xOffset, yOffset, wOffset, kDim, spatial, cols }) => {
    if (cols) env.im2col(x, xOffset, g, cols);
    // colsᵀ: element (q, r) of [spatial, kDim] is cols[r·spatial + q].
    const B = cols
      ? { data: cols, offset: 0, rowStride: 1, colStride: spatial }
      : { data: x, offset: xOffset, rowStride: 1, colStride: spatial };
    const A = { data: dy, offset: yOffset, rowStride: spatial, colStride: 1 };
    env.gemm(g.og, kDim, spatial, A, B, dw, wOffset, kDim, b > 0);
  });
}
