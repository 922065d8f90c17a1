import { isGradEnabled, tidy } from '../tensor/scope.js';
import type { Conv2dParams } from '../backend/backend.js';
import { DTypeError, ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { shapeStr, sizeOf } from '../tensor/shape.js';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { add, exp, mul, mulScalar, neg, rsqrt, sub, addScalar } from './elementwise.js';
import { concat, reshape, split } from './layout.js';
import { mean, sum } from './reduce.js';
import { isNarrow, narrowGather, type Weight } from './narrow.js';
import { backendOf, requireFloat, wrap } from './util.js';

export function softmax(x: Tensor): Tensor {
  const be = backendOf('softmax', x);
  requireFloat('softmax', x);
  const y = wrap(be, be.softmax(x.info, false), x.shape, x.dtype);
  // dx = y ⊙ (g − Σ g⊙y)
  return record('softmax', y, [x], [y], (g, [sy]) => [mul(sy!, sub(g, sum(mul(g, sy!), -1, true)))]);
}

export function logSoftmax(x: Tensor): Tensor {
  const be = backendOf('logSoftmax', x);
  requireFloat('logSoftmax', x);
  const y = wrap(be, be.softmax(x.info, true), x.shape, x.dtype);
  // dx = g − softmax(x) · Σ g
  return record('logSoftmax', y, [x], [y], (g, [sy]) => [sub(g, mul(exp(sy!), sum(g, -1, true)))]);
}

/** Rows of a 2-D table picked by int32 indices: out shape = [...indices.shape, cols]. */
export function gather(table: Tensor, indices: Tensor): Tensor {
  const be = backendOf('gather', table, indices);
  if (indices.dtype !== 'int32') throw new DTypeError(`gather: indices must be int32, got ${indices.dtype}`);
  if (table.rank !== 2) throw new ShapeError(`gather: table must be 2-D, got ${shapeStr(table.shape)}`);
  const cols = table.shape[1]!;
  const shape = [...indices.shape, cols];
  const out = wrap(be, be.gather(table.info, indices.info), shape, table.dtype);
  return record('gather', out, [table, null], [indices], (g, [idx]) => {
    const rows = wrap(g.backend, g.backend.scatterAdd(idx!.info, reshape(g, [-1, cols]).info, table.shape[0]!), table.shape, g.dtype);
    return [rows, null];
  });
}

/** Embedding lookup: weight [num, dim], ids int32 → [...ids.shape, dim] float32 (a narrow table is widened per row). */
export function embedding(weight: Weight, ids: Tensor): Tensor {
  return isNarrow(weight) ? narrowGather(weight, ids) : gather(weight as Tensor, ids);
}

export interface Conv2dOptions {
  readonly stride?: number | readonly [number, number];
  readonly padding?: number | readonly [number, number];
  readonly dilation?: number | readonly [number, number];
  readonly groups?: number;
}

const pair = (v: number | readonly [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0], v[1]];

export function conv2dParams(o: Conv2dOptions = {}): Conv2dParams {
  return { stride: pair(o.stride, 1), padding: pair(o.padding, 0), dilation: pair(o.dilation, 1), groups: o.groups ?? 1 };
}

/** Output spatial shape of a conv2d. */
export function conv2dOutShape(x: readonly number[], w: readonly number[], p: Conv2dParams): number[] {
  const [n, c, h, wd] = x as [number, number, number, number];
  const [o, ci, kh, kw] = w as [number, number, number, number];
  if (x.length !== 4 || w.length !== 4)
    throw new ShapeError(`conv2d: input ${shapeStr(x)} and weight ${shapeStr(w)} must be 4-D (NCHW / OIHW)`);
  if (c !== ci * p.groups || o % p.groups !== 0) {
    throw new ShapeError(`conv2d: input ${shapeStr(x)} does not fit weight ${shapeStr(w)} with groups ${p.groups}`);
  }
  const oh = Math.floor((h + 2 * p.padding[0] - p.dilation[0] * (kh - 1) - 1) / p.stride[0]) + 1;
  const ow = Math.floor((wd + 2 * p.padding[1] - p.dilation[1] * (kw - 1) - 1) / p.stride[1]) + 1;
  if (oh <= 0 || ow <= 0) throw new ShapeError(`conv2d: input ${shapeStr(x)} too small for kernel ${shapeStr(w)}`);
  return [n, o, oh, ow];
}

/** 2-D convolution, NCHW input and OIHW weight (PyTorch layout); bias [out] optional. */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null = null, options: Conv2dOptions = {}): Tensor {
  return tidy(() => {
    const be = backendOf('conv2d', x, w);
    requireFloat('conv2d', x);
    const p = conv2dParams(options);
    const shape = conv2dOutShape(x.shape, w.shape, p);
    const y = wrap(be, be.conv2d(x.info, w.info, p, shape), shape, 'float32');
    const out = record('conv2d', y, [x, w], [x, w], (g, [sx, sw]) => [
      x.requiresGrad ? wrap(g.backend, g.backend.conv2dBackpropInput(g.info, sw!.info, p, x.shape), x.shape, 'float32') : null,
      w.requiresGrad ? wrap(g.backend, g.backend.conv2dBackpropFilter(sx!.info, g.info, p, w.shape), w.shape, 'float32') : null,
    ]);
    return bias ? add(out, reshape(bias, [1, -1, 1, 1])) : out;
  });
}

/** Multiplies by a host-built keep mask scaled by 1/(1−p) (PyTorch's inverted dropout). */
export function dropoutWithMask(x: Tensor, mask: Tensor): Tensor {
  return mul(x, mask);
}

/** A dropout mask for `shape`: 1/(1−p) with probability 1−p, else 0; `random` returns uniforms in [0,1). */
export function dropoutMask(shape: readonly number[], p: number, random: () => number, like: Tensor): Tensor {
  const n = sizeOf(shape);
  const values = new Float32Array(n);
  const keep = 1 / (1 - p);
  for (let i = 0; i < n; i++) values[i] = random() >= p ? keep : 0;
  return tensor(values, shape, { backend: like.backend });
}

/** LayerNorm over the last axis (biased variance, as PyTorch). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  return tidy(() => {
    const mu = mean(x, -1, true);
    const xc = sub(x, mu);
    const variance = mean(mul(xc, xc), -1, true);
    let y = mul(xc, rsqrt(addScalar(variance, eps)));
    if (weight) y = mul(y, weight);
    if (bias) y = add(y, bias);
    return y;
  });
}

/** Whether an op on `inputs` records a gradient (then core runs the composite, not a forward-only kernel). */
const recordsGrad = (...inputs: readonly (Tensor | null)[]): boolean => isGradEnabled() && inputs.some((t) => t?.requiresGrad);

/**
 * RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · weight (Llama's order). Where no gradient is
 * recorded and the backend has the fused `rmsNorm` kernel, one kernel; otherwise the composite below.
 */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps: number): Tensor {
  const be = backendOf('rmsNorm', x, ...(weight ? [weight] : []));
  const n = x.shape[x.rank - 1];
  if (
    be.rmsNorm &&
    n !== undefined &&
    x.dtype === 'float32' &&
    (!weight || (weight.dtype === 'float32' && weight.rank === 1 && weight.size === n)) &&
    !recordsGrad(x, weight)
  ) {
    return wrap(be, be.rmsNorm(x.info, weight?.info ?? null, eps), x.shape, 'float32');
  }
  return rmsNormComposite(x, weight, eps);
}

/** rmsNorm from primitive kernels (differentiable). */
export function rmsNormComposite(x: Tensor, weight: Tensor | null, eps: number): Tensor {
  return tidy(() => {
    const y = mul(x, rsqrt(addScalar(mean(mul(x, x), -1, true), eps)));
    return weight ? mul(weight, y) : y;
  });
}

/**
 * Mean cross-entropy of logits [N, C] against int targets [N]; targets equal to `ignoreIndex` do not count
 * (PyTorch's default −100). Returns a scalar.
 */
export function crossEntropy(logits: Tensor, targets: Int32Array, ignoreIndex = -100): Tensor {
  return tidy(() => {
    if (logits.rank !== 2 || logits.shape[0] !== targets.length) {
      throw new ShapeError(`crossEntropy: logits ${shapeStr(logits.shape)} do not match ${targets.length} targets`);
    }
    const [n, c] = logits.shape as [number, number];
    const flatIdx = new Int32Array(n);
    const weights = new Float32Array(n);
    let counted = 0;
    for (let i = 0; i < n; i++) {
      const t = targets[i]!;
      if (t === ignoreIndex) continue;
      if (t < 0 || t >= c) throw new ShapeError(`crossEntropy: target ${t} at row ${i} is outside [0, ${c})`);
      flatIdx[i] = i * c + t;
      weights[i] = 1;
      counted++;
    }
    const be = logits.backend;
    const logp = reshape(logSoftmax(logits), [n * c, 1]);
    const picked = reshape(gather(logp, tensor(flatIdx, [n], { backend: be })), [n]);
    const weighted = mul(picked, tensor(weights, [n], { backend: be }));
    return mulScalar(neg(sum(weighted)), counted ? 1 / counted : 0);
  });
}

/**
 * Rotary position embedding with rotate_half (transformers' `apply_rotary_pos_emb`): x·cos + cat(−x₂, x₁)·sin
 * over the last axis, x₁ and x₂ its two halves. x [batch, heads, seq, d]; cos and sin [rows, 1, seq, d],
 * rows 1 or batch (they broadcast over the heads). Where no gradient is recorded and the backend has the
 * fused `rotary` kernel, one kernel (the same float32 roundings); otherwise the composite.
 */
export function rotaryEmbedding(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const be = backendOf('rotaryEmbedding', x, cos, sin);
  const d = x.shape[x.rank - 1]!;
  if (x.rank !== 4 || cos.rank !== 4 || d % 2 !== 0 || !sameShapeAs(cos, sin) || cos.shape[3] !== d || cos.shape[2] !== x.shape[2]) {
    throw new ShapeError(
      `rotaryEmbedding: x ${shapeStr(x.shape)}, cos ${shapeStr(cos.shape)}, sin ${shapeStr(sin.shape)} do not fit [batch, heads, seq, d] and [rows, 1, seq, d] (d even)`,
    );
  }
  const rows = cos.shape[0]!;
  if (
    be.rotary &&
    cos.shape[1] === 1 &&
    (rows === 1 || rows === x.shape[0]) &&
    x.dtype === 'float32' &&
    cos.dtype === 'float32' &&
    sin.dtype === 'float32' &&
    !recordsGrad(x, cos, sin)
  ) {
    return wrap(be, be.rotary(x.info, cos.info, sin.info), x.shape, 'float32');
  }
  return tidy(() => {
    const [x1, x2] = split(x, [d / 2, d / 2], -1) as [Tensor, Tensor];
    const rotated = concat([neg(x2), x1], -1);
    return add(mul(x, cos), mul(rotated, sin));
  });
}

const sameShapeAs = (a: Tensor, b: Tensor): boolean => a.rank === b.rank && a.shape.every((v, i) => v === b.shape[i]);
