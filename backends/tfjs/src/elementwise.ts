/** Elementwise kernels of the contract mapped onto tfjs ops. */
import * as tf from '@tensorflow/tfjs-core';
import type { BinaryOp, UnaryOp } from '@dorajs/core';

/** tfjs comparisons return 'bool'; the contract wants 1/0 in float32. */
function asFloat(t: tf.Tensor): tf.Tensor {
  return tf.cast(t, 'float32');
}

const SQRT_HALF = Math.SQRT1_2;
/** √(2/π), PyTorch's constant for gelu(approximate='tanh'). */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export const UNARY: Readonly<Record<UnaryOp, (x: tf.Tensor) => tf.Tensor>> = {
  neg: (x) => tf.neg(x),
  abs: (x) => tf.abs(x),
  exp: (x) => tf.exp(x),
  log: (x) => tf.log(x),
  sqrt: (x) => tf.sqrt(x),
  rsqrt: (x) => tf.rsqrt(x),
  reciprocal: (x) => tf.reciprocal(x),
  square: (x) => tf.square(x),
  relu: (x) => tf.relu(x),
  step: (x) => tf.step(x, 0),
  sigmoid: (x) => tf.sigmoid(x),
  silu: (x) => tf.mul(x, tf.sigmoid(x)),
  // Exact (erf) form, as torch.nn.GELU(): 0.5·x·(1 + erf(x/√2)).
  gelu: (x) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, SQRT_HALF)), 1)),
  // PyTorch's gelu(approximate='tanh'): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
  geluTanh: (x) => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  },
  tanh: (x) => tf.tanh(x),
  erf: (x) => tf.erf(x),
  sign: (x) => tf.sign(x),
  sin: (x) => tf.sin(x),
  cos: (x) => tf.cos(x),
  isFinite: (x) => asFloat(tf.isFinite(x)),
};

export const BINARY: Readonly<Record<BinaryOp, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor>> = {
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  div: (a, b) => tf.div(a, b),
  max: (a, b) => tf.maximum(a, b),
  min: (a, b) => tf.minimum(a, b),
  pow: (a, b) => tf.pow(a, b),
  greater: (a, b) => asFloat(tf.greater(a, b)),
  equal: (a, b) => asFloat(tf.equal(a, b)),
};

/**
 * a·scale + offset. Integer tensors with integer coefficients stay in int32 arithmetic; otherwise the result
 * is computed in float32 (and cast back to the input's dtype by the caller, as core declares).
 */
export function affine(x: tf.Tensor, scale: number, offset: number): tf.Tensor {
  const dtype = x.dtype === 'int32' && Number.isInteger(scale) && Number.isInteger(offset) ? 'int32' : 'float32';
  let y = dtype === x.dtype ? x : tf.cast(x, dtype);
  if (scale !== 1) y = tf.mul(y, tf.scalar(scale, dtype));
  if (offset !== 0) y = tf.add(y, tf.scalar(offset, dtype));
  // Unchanged input: the backend's run() hands back an alias, never the input's own handle.
  return y;
}

/** cond ? a : b with broadcasting; any non-zero condition is true. */
export function select(cond: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.where(tf.notEqual(cond, tf.scalar(0, cond.dtype)), a, b);
}
