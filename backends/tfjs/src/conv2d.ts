/**
 * Conv2d and its two gradients in the contract's layout (NCHW activations, OIHW weights, PyTorch semantics:
 * symmetric zero padding, stride, dilation, groups) on tfjs' NHWC / HWIO ops.
 *
 * tfjs has no groups and refuses stride > 1 together with dilation > 1, so:
 * - groups: depthwise (groups = C) uses tf.depthwiseConv2d, other groups are split, computed and concatenated;
 * - stride and dilation both > 1: the stride-1 dilated result is computed and subsampled (forward), or dy is
 *   spread back onto the stride-1 grid with zeros (gradients). Rare in practice, so the waste is accepted.
 * The filter gradient is itself a convolution: x with batch and channels swapped, filtered by dy, with the
 * roles of stride and dilation exchanged — only tf.conv2d is needed, which every tfjs backend has.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type Conv2dParams } from '@dorajs/core';
import { formatShape } from './shapes.js';

type Pair = readonly [number, number];
type Explicit = [[number, number], [number, number], [number, number], [number, number]];

const TO_NHWC = [0, 2, 3, 1];
const TO_NCHW = [0, 3, 1, 2];
/** OIHW → HWIO, tfjs' conv2d filter layout. */
const TO_HWIO = [2, 3, 1, 0];

const isOne = (p: Pair): boolean => p[0] === 1 && p[1] === 1;
const explicitPad = (pad: Pair): Explicit => [
  [0, 0],
  [pad[0], pad[0]],
  [pad[1], pad[1]],
  [0, 0],
];
/** tfjs conv ops accept stride > 1 or dilation > 1, never both. */
const tfAccepts = (strides: Pair, dilations: Pair): boolean => isOne(strides) || isOne(dilations);

/** y = conv2d(x, w). x [N, C, H, W], w [O, C/groups, kh, kw] → [N, O, OH, OW]. */
export function conv2dForward(x: tf.Tensor4D, w: tf.Tensor4D, p: Conv2dParams): tf.Tensor4D {
  checkGroups('conv2d', x.shape[1], w.shape, p.groups);
  const xh = tf.transpose(x, TO_NHWC) as tf.Tensor4D;
  const y = isDepthwise(x.shape[1], w.shape, p.groups)
    ? depthwiseNHWC(xh, depthwiseFilter(w, x.shape[1]), p)
    : perGroup(p.groups, 3, [xh, 3], [w, 0], (xg, wg) => convNHWC(xg, tf.transpose(wg, TO_HWIO) as tf.Tensor4D, p));
  return tf.transpose(y, TO_NCHW) as tf.Tensor4D;
}

/** dL/dx. dy [N, O, OH, OW], w [O, C/groups, kh, kw] → [N, C, H, W] (= xShape). */
export function conv2dBackpropInput(dy: tf.Tensor4D, w: tf.Tensor4D, p: Conv2dParams, xShape: readonly number[]): tf.Tensor4D {
  const [n, c, h, wd] = xShape as [number, number, number, number];
  checkGroups('conv2dBackpropInput', c, w.shape, p.groups);
  const dyh = tf.transpose(dy, TO_NHWC) as tf.Tensor4D;
  let dx: tf.Tensor4D;
  if (isDepthwise(c, w.shape, p.groups)) {
    // Each dy channel o reaches only input channel ⌊o / m⌋: a depthwise pass with the flipped kernels, then a
    // sum over the m outputs of each input channel.
    const m = w.shape[0] / c;
    const flipped = tf.transpose(tf.reverse(w, [2, 3]), [2, 3, 0, 1]) as tf.Tensor4D; // [kh, kw, O, 1]
    const spread = spreadForInputGrad(dyh, [h, wd], w.shape, p);
    const perOut = depthwiseNHWC(spread, flipped, { ...p, stride: [1, 1], padding: [0, 0] });
    dx = tf.sum(tf.reshape(perOut, [n, h, wd, c, m]), 4) as tf.Tensor4D;
  } else {
    dx = perGroup(p.groups, 3, [dyh, 3], [w, 0], (dyg, wg) => inputGradNHWC(dyg, wg, [n, h, wd], p));
  }
  return tf.transpose(dx, TO_NCHW) as tf.Tensor4D;
}

/** dL/dw. x [N, C, H, W], dy [N, O, OH, OW] → [O, C/groups, kh, kw] (= wShape). */
export function conv2dBackpropFilter(x: tf.Tensor4D, dy: tf.Tensor4D, p: Conv2dParams, wShape: readonly number[]): tf.Tensor4D {
  const [o, cg, kh, kw] = wShape as [number, number, number, number];
  checkGroups('conv2dBackpropFilter', x.shape[1], wShape, p.groups);
  if (isDepthwise(x.shape[1], wShape, p.groups)) return depthwiseFilterGrad(x, dy, [kh, kw], p);
  // Per group: channels-as-batch view of x [C, H, W, N] filtered by dy as [OH, OW, N, O].
  const xt = tf.transpose(x, [1, 2, 3, 0]) as tf.Tensor4D;
  const dyh = tf.transpose(dy, TO_NHWC) as tf.Tensor4D;
  const grad = perGroup(p.groups, 0, [xt, 0], [dyh, 3], (xg, dyg) => filterGradGroup(xg, dyg, [x.shape[2], x.shape[3]], [kh, kw], p));
  if (grad.shape[0] !== o || grad.shape[1] !== cg) {
    throw new ShapeError(`conv2dBackpropFilter: computed ${formatShape(grad.shape)}, expected ${formatShape(wShape)}`);
  }
  return grad;
}

// ---------------------------------------------------------------------------------------------------------

function convNHWC(x: tf.Tensor4D, filter: tf.Tensor4D, p: Conv2dParams): tf.Tensor4D {
  if (tfAccepts(p.stride, p.dilation)) {
    return tf.conv2d(x, filter, [p.stride[0], p.stride[1]], explicitPad(p.padding), 'NHWC', [p.dilation[0], p.dilation[1]]);
  }
  const full = tf.conv2d(x, filter, 1, explicitPad(p.padding), 'NHWC', [p.dilation[0], p.dilation[1]]);
  return subsample(full, p.stride);
}

function depthwiseNHWC(x: tf.Tensor4D, filter: tf.Tensor4D, p: Conv2dParams): tf.Tensor4D {
  const dil: [number, number] = [p.dilation[0], p.dilation[1]];
  if (tfAccepts(p.stride, p.dilation)) {
    return tf.depthwiseConv2d(x, filter, [p.stride[0], p.stride[1]], explicitPad(p.padding), 'NHWC', dil);
  }
  return subsample(tf.depthwiseConv2d(x, filter, 1, explicitPad(p.padding), 'NHWC', dil), p.stride);
}

/** Every stride-th row and column of an NHWC tensor, from the first. */
function subsample(t: tf.Tensor4D, stride: Pair): tf.Tensor4D {
  const [n, h, w, c] = t.shape;
  return tf.stridedSlice(t, [0, 0, 0, 0], [n, h, w, c], [1, stride[0], stride[1], 1]) as tf.Tensor4D;
}

/**
 * dy of a strided conv placed back on the stride-1 output grid of x: zeros between rows/columns, and
 * zeros after the last ones for the input rows the stride never reached.
 */
function toStrideOneGrid(dy: tf.Tensor4D, stride: Pair, grid: Pair): tf.Tensor4D {
  if (isOne(stride)) return dy;
  const [n, oh, ow, o] = dy.shape;
  const [sh, sw] = stride;
  const spaced = tf.reshape(
    tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, o]), [
      [0, 0],
      [0, 0],
      [0, sh - 1],
      [0, 0],
      [0, sw - 1],
      [0, 0],
    ]),
    [n, oh * sh, ow * sw, o],
  );
  return tf.slice(spaced, [0, 0, 0, 0], [n, grid[0], grid[1], o]) as tf.Tensor4D;
}

/** Height/width of the stride-1 output of x with this padding, dilation and kernel. */
function strideOneGrid(x: Pair, kernel: Pair, p: Conv2dParams): [number, number] {
  return [x[0] + 2 * p.padding[0] - p.dilation[0] * (kernel[0] - 1), x[1] + 2 * p.padding[1] - p.dilation[1] * (kernel[1] - 1)];
}

/**
 * dy spread onto the stride-1 grid and padded (or cropped) by dilation·(k−1) − padding, so that a stride-1
 * dilated convolution with the flipped kernel yields dx of exactly the input's height and width.
 */
function spreadForInputGrad(dy: tf.Tensor4D, x: Pair, wShape: readonly number[], p: Conv2dParams): tf.Tensor4D {
  const kernel: Pair = [wShape[2]!, wShape[3]!];
  const grid = strideOneGrid(x, kernel, p);
  let t = toStrideOneGrid(dy, p.stride, grid);
  const q = [p.dilation[0] * (kernel[0] - 1) - p.padding[0], p.dilation[1] * (kernel[1] - 1) - p.padding[1]] as const;
  const crop = [Math.max(0, -q[0]), Math.max(0, -q[1])] as const;
  if (crop[0] > 0 || crop[1] > 0) {
    const [n, gh, gw, o] = t.shape;
    t = tf.slice(t, [0, crop[0], crop[1], 0], [n, gh - 2 * crop[0], gw - 2 * crop[1], o]);
  }
  const pad = [Math.max(0, q[0]), Math.max(0, q[1])] as const;
  return pad[0] > 0 || pad[1] > 0
    ? tf.pad(t, [
        [0, 0],
        [pad[0], pad[0]],
        [pad[1], pad[1]],
        [0, 0],
      ])
    : t;
}

/** dL/dx for one group, NHWC. w [O, C, kh, kw]. */
function inputGradNHWC(dy: tf.Tensor4D, w: tf.Tensor4D, x: readonly [number, number, number], p: Conv2dParams): tf.Tensor4D {
  const [n, h, wd] = x;
  const c = w.shape[1];
  if (isOne(p.dilation)) {
    // tfjs' own transposed convolution (the Conv2DBackpropInput kernel) handles stride and padding.
    const filter = tf.transpose(w, TO_HWIO) as tf.Tensor4D; // [kh, kw, C, O]
    return tf.conv2dTranspose(dy, filter, [n, h, wd, c], [p.stride[0], p.stride[1]], explicitPad(p.padding));
  }
  const flipped = tf.transpose(tf.reverse(w, [2, 3]), [2, 3, 0, 1]) as tf.Tensor4D; // [kh, kw, O, C]
  const spread = spreadForInputGrad(dy, [h, wd], w.shape, p);
  return tf.conv2d(spread, flipped, 1, 'valid', 'NHWC', [p.dilation[0], p.dilation[1]]);
}

/**
 * dL/dw for one group: xt [C, H, W, N] (channels as batch), dy [N, OH, OW, O] → [O, C, kh, kw].
 * dw[o, c, i, j] = Σ dy[n, o, a, b] · xpad[n, c, a·s + i·d, b·s + j·d]: a convolution over (i, j) with
 * stride d and the dy taps dilated by s.
 */
function filterGradGroup(xt: tf.Tensor4D, dy: tf.Tensor4D, x: Pair, kernel: Pair, p: Conv2dParams): tf.Tensor4D {
  const pad = explicitPad(p.padding);
  let full: tf.Tensor4D;
  if (tfAccepts(p.dilation, p.stride)) {
    const taps = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [OH, OW, N, O]
    full = tf.conv2d(xt, taps, [p.dilation[0], p.dilation[1]], pad, 'NHWC', [p.stride[0], p.stride[1]]);
  } else {
    const grid = toStrideOneGrid(dy, p.stride, strideOneGrid(x, kernel, p));
    const taps = tf.transpose(grid, [1, 2, 0, 3]) as tf.Tensor4D;
    full = tf.conv2d(xt, taps, [p.dilation[0], p.dilation[1]], pad, 'NHWC', 1);
  }
  // A stride that does not divide the padded input leaves extra positions past the kernel: drop them.
  const [c, , , o] = full.shape;
  const grad = tf.slice(full, [0, 0, 0, 0], [c, kernel[0], kernel[1], o]);
  return tf.transpose(grad, [3, 0, 1, 2]) as tf.Tensor4D;
}

/**
 * Depthwise dL/dw [O, 1, kh, kw]: one strided slice of the padded input per kernel tap, times dy, summed
 * over batch and space. Splitting into C single-channel convolutions would be far slower for large C.
 */
function depthwiseFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, kernel: Pair, p: Conv2dParams): tf.Tensor4D {
  const [n, c] = x.shape;
  const [, o, oh, ow] = dy.shape;
  const m = o / c;
  const xpad = tf.pad(x, [
    [0, 0],
    [0, 0],
    [p.padding[0], p.padding[0]],
    [p.padding[1], p.padding[1]],
  ]);
  const dy5 = tf.reshape(dy, [n, c, m, oh, ow]);
  const taps: tf.Tensor[] = [];
  for (let i = 0; i < kernel[0]; i++) {
    for (let j = 0; j < kernel[1]; j++) {
      const top = i * p.dilation[0];
      const left = j * p.dilation[1];
      const window = tf.stridedSlice(
        xpad,
        [0, 0, top, left],
        [n, c, top + (oh - 1) * p.stride[0] + 1, left + (ow - 1) * p.stride[1] + 1],
        [1, 1, p.stride[0], p.stride[1]],
      );
      taps.push(tf.sum(tf.mul(dy5, tf.reshape(window, [n, c, 1, oh, ow])), [0, 3, 4])); // [C, m]
    }
  }
  // taps: kh·kw tensors [C, m] → [kh, kw, C, m] → [C·m, 1, kh, kw]
  const stacked = tf.reshape(tf.stack(taps), [kernel[0], kernel[1], o]);
  return tf.reshape(tf.transpose(stacked, [2, 0, 1]), [o, 1, kernel[0], kernel[1]]) as tf.Tensor4D;
}

/** OIHW depthwise weights [C·m, 1, kh, kw] → tfjs' [kh, kw, C, m] (output channel c·m + q in both). */
function depthwiseFilter(w: tf.Tensor4D, channels: number): tf.Tensor4D {
  const [o, , kh, kw] = w.shape;
  return tf.transpose(tf.reshape(w, [channels, o / channels, kh, kw]), [2, 3, 0, 1]) as tf.Tensor4D;
}

function isDepthwise(channels: number, wShape: readonly number[], groups: number): boolean {
  return groups > 1 && groups === channels && wShape[1] === 1;
}

function checkGroups(op: string, channels: number, wShape: readonly number[], groups: number): void {
  if (!Number.isInteger(groups) || groups < 1 || channels % groups !== 0 || wShape[0]! % groups !== 0) {
    throw new ConfigError(`${op}: groups=${groups} must divide the ${channels} input and ${wShape[0]} output channels`);
  }
  if (wShape[1]! * groups !== channels) {
    throw new ShapeError(
      `${op}: weight ${formatShape(wShape)} with groups=${groups} expects ${wShape[1]! * groups} input channels, got ${channels}`,
    );
  }
}

/** Applies `fn` to each group's slices of two tensors and concatenates the results along `outAxis`. */
function perGroup(
  groups: number,
  outAxis: number,
  first: readonly [tf.Tensor4D, number],
  second: readonly [tf.Tensor4D, number],
  fn: (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor4D,
): tf.Tensor4D {
  if (groups === 1) return fn(first[0], second[0]);
  const as = tf.split(first[0], groups, first[1]) as tf.Tensor4D[];
  const bs = tf.split(second[0], groups, second[1]) as tf.Tensor4D[];
  return tf.concat(
    as.map((a, g) => fn(a, bs[g]!)),
    outAxis,
  ) as tf.Tensor4D;
}
