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

/**
 * Activations of the form x·(something → 0) give −∞·0 = NaN at x = −∞; PyTorch and the reference backend
 * give −0 there.
 */
function zeroAtNegInf(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
  return tf.where(tf.equal(x, -Infinity), tf.zerosLike(y), y);
}

/** NaN where either input is NaN: tfjs-wasm's maximum/minimum (XNNPACK) return the other operand. */
function propagateNaN(a: tf.Tensor, b: tf.Tensor, y: tf.Tensor): tf.Tensor {
  if (a.dtype === 'int32') return y;
  const eitherNaN = tf.logicalOr(tf.isNaN(a), tf.isNaN(b));
  return tf.where(eitherNaN, tf.fill(y.shape, NaN), y);
}

/** int32 quotient truncated toward zero, 0 for division by zero (C semantics, as the reference backend). */
function intDiv(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  // tfjs divides int32 with floor (exactly); move the quotients of negative non-exact divisions up by one.
  // Scalars must be int32 too: a float32 scalar would promote the whole expression (and tfjs-wasm's `where`
  // then reinterprets int bits as floats).
  const zero = tf.scalar(0, 'int32');
  const floor = tf.floorDiv(a, b);
  const inexact = tf.notEqual(tf.sub(a, tf.mul(floor, b)), zero);
  const oppositeSigns = tf.notEqual(tf.less(a, zero), tf.less(b, zero));
  const trunc = tf.where(tf.logicalAnd(inexact, oppositeSigns), tf.add(floor, tf.scalar(1, 'int32')), floor);
  return tf.where(tf.equal(b, zero), tf.zerosLike(trunc), trunc);
}

/** int32 power computed in float32; results that are not finite (0 to a negative power) become 0. */
function intPow(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const y = tf.pow(tf.cast(a, 'float32'), tf.cast(b, 'float32'));
  return tf.cast(tf.where(tf.isFinite(y), y, tf.zerosLike(y)), 'int32');
}

/** −1, 0 or 1, NaN for NaN (tf.sign gives 0 for NaN, and 0 for tiny values on wasm). */
function sign(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'int32') return tf.sign(x);
  const s = tf.sub(asFloat(tf.greater(x, 0)), asFloat(tf.less(x, 0)));
  return tf.where(tf.isNaN(x), x, s);
}

/**
 * tfjs negates and takes absolute values of int32 through float32 (2³¹ − 1 → −2³¹); a subtraction from an
 * int32 zero stays exact.
 */
function intNeg(x: tf.Tensor): tf.Tensor {
  return tf.sub(tf.scalar(0, 'int32'), x);
}

export const UNARY: Readonly<Record<UnaryOp, (x: tf.Tensor) => tf.Tensor>> = {
  neg: (x) => (x.dtype === 'int32' ? intNeg(x) : tf.neg(x)),
  abs: (x) => (x.dtype === 'int32' ? tf.where(tf.less(x, tf.scalar(0, 'int32')), intNeg(x), x) : tf.abs(x)),
  exp: (x) => tf.exp(x),
  log: (x) => tf.log(x),
  sqrt: (x) => tf.sqrt(x),
  rsqrt: (x) => tf.rsqrt(x),
  reciprocal: (x) => tf.reciprocal(x),
  square: (x) => tf.square(x),
  relu: (x) => tf.relu(x),
  step: (x) => tf.step(x, 0),
  sigmoid: (x) => tf.sigmoid(x),
  silu: (x) => zeroAtNegInf(x, tf.mul(x, tf.sigmoid(x))),
  // Exact (erf) form, as torch.nn.GELU(): 0.5·x·(1 + erf(x/√2)).
  gelu: (x) => zeroAtNegInf(x, tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, SQRT_HALF)), 1))),
  // PyTorch's gelu(approximate='tanh'): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
  geluTanh: (x) => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return zeroAtNegInf(x, tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)));
  },
  tanh: (x) => tf.tanh(x),
  erf: (x) => tf.erf(x),
  sin: (x) => tf.sin(x),
  cos: (x) => tf.cos(x),
  sign,
  // Integers are always finite (tfjs-wasm's IsFinite answers 0 for int32).
  isFinite: (x) => (x.dtype === 'int32' ? tf.onesLike(x) : asFloat(tf.isFinite(x))),
};

export const BINARY: Readonly<Record<BinaryOp, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor>> = {
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  div: (a, b) => (a.dtype === 'int32' && b.dtype === 'int32' ? intDiv(a, b) : tf.div(a, b)),
  max: (a, b) => propagateNaN(a, b, tf.maximum(a, b)),
  min: (a, b) => propagateNaN(a, b, tf.minimum(a, b)),
  pow: (a, b) => (a.dtype === 'int32' && b.dtype === 'int32' ? intPow(a, b) : tf.pow(a, b)),
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
