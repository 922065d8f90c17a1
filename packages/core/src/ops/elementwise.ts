import { tidy } from '../tensor/scope.js';
import type { BinaryOp, UnaryOp } from '../backend/backend.js';
import type { DType } from '../dtype.js';
import { DoraError, DTypeError } from '../errors.js';
import { record, setGradAdd } from '../tensor/autograd.js';
import { broadcastedAxes, broadcastShapes, type Shape, sameShape } from '../tensor/shape.js';
import { full, Tensor } from '../tensor/tensor.js';
import { reshape } from './layout.js';
import { backendOf, savePair, wrap } from './util.js';

function rawBinary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const be = backendOf(op, a, b);
  if (a.dtype !== b.dtype) throw new DTypeError(`${op}: dtypes differ (${a.dtype} and ${b.dtype})`);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const isCompare = op === 'greater' || op === 'equal';
  return wrap(be, be.binary(op, a.info, b.info, shape), shape, isCompare ? 'float32' : a.dtype);
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  return tidy(() => {
    if (sameShape(g.shape, shape)) return g;
    const axes = broadcastedAxes(shape, g.shape);
    const b = g.backend;
    const kept = g.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const reduced = axes.length ? wrap(b, b.reduce('sum', g.info, axes, kept), kept, g.dtype) : g;
    return reshape(reduced, shape);
  });
}

export function add(a: Tensor, b: Tensor): Tensor {
  return record('add', rawBinary('add', a, b), [a, b], [], (g) => [sumTo(g, a.shape), sumTo(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return record('sub', rawBinary('sub', a, b), [a, b], [], (g) => [sumTo(g, a.shape), b.requiresGrad ? sumTo(neg(g), b.shape) : null]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  // da = g·b needs b, db = g·a needs a.
  const [saved, read] = savePair(a, b, b.requiresGrad, a.requiresGrad);
  return record('mul', rawBinary('mul', a, b), [a, b], saved, (g, s) => {
    const [sa, sb] = read(s);
    return [
      a.requiresGrad ? sumTo(rawBinary('mul', g, sb!), a.shape) : null,
      b.requiresGrad ? sumTo(rawBinary('mul', g, sa!), b.shape) : null,
    ];
  });
}

export function div(a: Tensor, b: Tensor): Tensor {
  // da = g/b needs b; db = -g·a/b² needs both.
  const [saved, read] = savePair(a, b, b.requiresGrad, a.requiresGrad || b.requiresGrad);
  return record('div', rawBinary('div', a, b), [a, b], saved, (g, s) => {
    const [sa, sb] = read(s);
    return [
      a.requiresGrad ? sumTo(rawBinary('div', g, sb!), a.shape) : null,
      // d(a/b)/db = -a/b²
      b.requiresGrad ? sumTo(neg(rawBinary('div', rawBinary('mul', g, sa!), rawBinary('mul', sb!, sb!))), b.shape) : null,
    ];
  });
}

/** Elementwise max/min/pow/comparisons: not differentiable here (used on constants and masks). */
export function maximum(a: Tensor, b: Tensor): Tensor {
  return noGradOp('maximum', rawBinary('max', a, b), [a, b]);
}
export function minimum(a: Tensor, b: Tensor): Tensor {
  return noGradOp('minimum', rawBinary('min', a, b), [a, b]);
}
export function pow(a: Tensor, b: Tensor): Tensor {
  return noGradOp('pow', rawBinary('pow', a, b), [a, b]);
}
export function greater(a: Tensor, b: Tensor): Tensor {
  return rawBinary('greater', a, b);
}
export function equal(a: Tensor, b: Tensor): Tensor {
  return rawBinary('equal', a, b);
}

function noGradOp(op: string, out: Tensor, inputs: Tensor[]): Tensor {
  return record(op, out, inputs, [], () => {
    throw new DoraError(`${op} has no gradient; compute it on detached values`);
  });
}

/** a·scale + offset (scalars; no upload). */
export function affine(a: Tensor, scale: number, offset = 0): Tensor {
  const be = backendOf('affine', a);
  const out = wrap(be, be.affine(a.info, scale, offset), a.shape, a.dtype);
  return record('affine', out, [a], [], (g) => [affine(g, scale)]);
}
export const mulScalar = (a: Tensor, s: number): Tensor => affine(a, s, 0);
export const addScalar = (a: Tensor, s: number): Tensor => affine(a, 1, s);

function rawUnary(op: UnaryOp, a: Tensor): Tensor {
  const be = backendOf(op, a);
  if (a.dtype !== 'float32' && op !== 'neg' && op !== 'abs') throw new DTypeError(`${op} needs float32, got ${a.dtype}`);
  return wrap(be, be.unary(op, a.info), a.shape, a.dtype);
}

type UnaryGrad = (g: Tensor, x: Tensor, y: Tensor) => Tensor;

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TANH_C = Math.sqrt(2 / Math.PI);

const m = (a: Tensor, b: Tensor) => rawBinary('mul', a, b);
const aff = (a: Tensor, s: number, o: number) => {
  const be = a.backend;
  return wrap(be, be.affine(a.info, s, o), a.shape, a.dtype);
};

const unaryGrads: Partial<Record<UnaryOp, UnaryGrad>> = {
  neg: (g) => rawUnary('neg', g),
  exp: (g, _x, y) => m(g, y),
  log: (g, x) => rawBinary('div', g, x),
  sqrt: (g, _x, y) => rawBinary('div', aff(g, 0.5, 0), y),
  rsqrt: (g, _x, y) => m(g, aff(m(y, m(y, y)), -0.5, 0)),
  reciprocal: (g, _x, y) => m(g, aff(m(y, y), -1, 0)),
  square: (g, x) => m(g, aff(x, 2, 0)),
  abs: (g, x) => m(g, rawUnary('sign', x)),
  relu: (g, x) => m(g, rawUnary('step', x)),
  sigmoid: (g, _x, y) => m(g, m(y, aff(y, -1, 1))),
  tanh: (g, _x, y) => m(g, aff(m(y, y), -1, 1)),
  sin: (g, x) => m(g, rawUnary('cos', x)),
  cos: (g, x) => m(g, rawUnary('neg', rawUnary('sin', x))),
  silu: (g, x) => {
    // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
    const s = rawUnary('sigmoid', x);
    return m(g, m(s, aff(m(x, aff(s, -1, 1)), 1, 1)));
  },
  gelu: (g, x) => {
    // Φ(x) + x·φ(x)
    const cdf = aff(rawUnary('erf', aff(x, SQRT1_2, 0)), 0.5, 0.5);
    const pdf = aff(rawUnary('exp', aff(m(x, x), -0.5, 0)), INV_SQRT_2PI, 0);
    return m(g, rawBinary('add', cdf, m(x, pdf)));
  },
  geluTanh: (g, x) => {
    // 0.5(1+t) + 0.5x(1−t²)·c(1 + 3·0.044715x²), t = tanh(c(x + 0.044715x³))
    const x2 = m(x, x);
    const t = rawUnary('tanh', aff(m(x, aff(x2, 0.044715, 1)), TANH_C, 0));
    const left = aff(t, 0.5, 0.5);
    const right = m(m(aff(x, 0.5, 0), aff(m(t, t), -1, 1)), aff(x2, TANH_C * 3 * 0.044715, TANH_C));
    return m(g, rawBinary('add', left, right));
  },
};

/** Unary ops whose gradient is written in terms of the output y only (the rest read x only). */
const GRAD_FROM_Y = new Set<UnaryOp>(['exp', 'sqrt', 'rsqrt', 'reciprocal', 'sigmoid', 'tanh']);

function unary(op: UnaryOp, x: Tensor): Tensor {
  const y = rawUnary(op, x);
  const grad = unaryGrads[op];
  if (!grad) return noGradOp(op, y, [x]);
  // Each gradient reads x or y, never both (neg neither): keep only that one, as PyTorch does.
  if (op === 'neg') return record(op, y, [x], [], (g) => [grad(g, x, y)]);
  const fromY = GRAD_FROM_Y.has(op);
  return record(op, y, [x], [fromY ? y : x], (g, [s]) => [fromY ? grad(g, x, s!) : grad(g, s!, y)]);
}

export const neg = (x: Tensor) => unary('neg', x);
export const abs = (x: Tensor) => unary('abs', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const reciprocal = (x: Tensor) => unary('reciprocal', x);
export const square = (x: Tensor) => unary('square', x);
export const relu = (x: Tensor) => unary('relu', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const silu = (x: Tensor) => unary('silu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const geluTanh = (x: Tensor) => unary('geluTanh', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const sin = (x: Tensor) => unary('sin', x);
export const cos = (x: Tensor) => unary('cos', x);
export const erf = (x: Tensor) => unary('erf', x);
// biome-ignore lint/suspicious/noShadowRestrictedNames: the op keeps PyTorch's name (torch.isfinite); callers import it by name
export const isFinite = (x: Tensor) => rawUnary('isFinite', x);

/** cond ? a : b, broadcasting. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const be = backendOf('where', cond, a, b);
  const shape = broadcastShapes(broadcastShapes(cond.shape, a.shape, 'where'), b.shape, 'where');
  const out = wrap(be, be.where(cond.info, a.info, b.info, shape), shape, a.dtype);
  return record('where', out, [null, a, b], [cond], (g, [c]) => {
    const zero = full([], 0, { backend: g.backend });
    const gw = (x: Tensor, y: Tensor) => wrap(g.backend, g.backend.where(c!.info, x.info, y.info, g.shape), g.shape, g.dtype);
    return [null, a.requiresGrad ? sumTo(gw(g, zero), a.shape) : null, b.requiresGrad ? sumTo(gw(zero, g), b.shape) : null];
  });
}

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return reshape(x, x.shape);
  const be = backendOf('cast', x);
  const out = wrap(be, be.cast(x.info, dtype), x.shape, dtype);
  return record('cast', out, [x], [], (g) => [cast(g, x.dtype)]);
}

/** The same values, cut off from autograd (shares storage; no copy). */
export function detach(x: Tensor): Tensor {
  x.assertAlive();
  return new Tensor(x.storage.retain(), x.shape);
}

setGradAdd((a, b) => rawBinary('add', a, b));
