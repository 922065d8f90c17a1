/** Direct-loop conv2d and gradients in PyTorch's NCHW/OIHW semantics: slow, obviously right. */
import type { Conv2dParams } from '@dorajs/core';

export interface ConvCase {
  readonly x: readonly [number, number, number, number];
  readonly w: readonly [number, number, number, number];
  readonly p: Conv2dParams;
}

export function outShape({ x, w, p }: ConvCase): [number, number, number, number] {
  const oh = Math.floor((x[2] + 2 * p.padding[0] - p.dilation[0] * (w[2] - 1) - 1) / p.stride[0]) + 1;
  const ow = Math.floor((x[3] + 2 * p.padding[1] - p.dilation[1] * (w[3] - 1) - 1) / p.stride[1]) + 1;
  return [x[0], w[0], oh, ow];
}

/** Calls visit(xIndex, wIndex, yIndex) for every multiply-add of the convolution. */
function forEachTap(c: ConvCase, visit: (xi: number, wi: number, yi: number) => void): void {
  const [n, ch, h, wd] = c.x;
  const [o, cg, kh, kw] = c.w;
  const [, , oh, ow] = outShape(c);
  const og = o / c.p.groups;
  for (let b = 0; b < n; b++)
    for (let oc = 0; oc < o; oc++) {
      const g = Math.floor(oc / og);
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++)
          for (let ic = 0; ic < cg; ic++)
            for (let u = 0; u < kh; u++)
              for (let v = 0; v < kw; v++) {
                const r = i * c.p.stride[0] - c.p.padding[0] + u * c.p.dilation[0];
                const s = j * c.p.stride[1] - c.p.padding[1] + v * c.p.dilation[1];
                if (r < 0 || r >= h || s < 0 || s >= wd) continue;
                const xc = g * cg + ic;
                visit(((b * ch + xc) * h + r) * wd + s, ((oc * cg + ic) * kh + u) * kw + v, ((b * o + oc) * oh + i) * ow + j);
              }
    }
}

export function conv2dRef(c: ConvCase, x: Float32Array, w: Float32Array): Float64Array {
  const [n, o, oh, ow] = outShape(c);
  const y = new Float64Array(n * o * oh * ow);
  forEachTap(c, (xi, wi, yi) => (y[yi]! += x[xi]! * w[wi]!));
  return y;
}

export function inputGradRef(c: ConvCase, dy: Float32Array, w: Float32Array): Float64Array {
  const dx = new Float64Array(c.x.reduce((a, b) => a * b, 1));
  forEachTap(c, (xi, wi, yi) => (dx[xi]! += dy[yi]! * w[wi]!));
  return dx;
}

export function filterGradRef(c: ConvCase, x: Float32Array, dy: Float32Array): Float64Array {
  const dw = new Float64Array(c.w.reduce((a, b) => a * b, 1));
  forEachTap(c, (xi, wi, yi) => (dw[wi]! += x[xi]! * dy[yi]!));
  return dw;
}
