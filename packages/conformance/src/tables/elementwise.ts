/**
 * Elementwise cases as data: special-value inputs per unary op, binary op inputs with their edge cases,
 * and the broadcasting layouts. Expectations come from float64 host functions (rounded to float32).
 */
import type { BinaryOp, UnaryOp } from '@dorajs/core';
import { erfHost, geluHost, geluTanhHost } from '../host-math.js';

export const UNARY_HOST: Readonly<Record<UnaryOp, (x: number) => number>> = {
  neg: (x) => -x,
  abs: Math.abs,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  reciprocal: (x) => 1 / x,
  square: (x) => x * x,
  relu: (x) => (Number.isNaN(x) ? NaN : Math.max(x, 0)),
  step: (x) => (x > 0 ? 1 : 0),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: geluHost,
  geluTanh: geluTanhHost,
  tanh: Math.tanh,
  erf: erfHost,
  sin: Math.sin,
  cos: Math.cos,
  sign: Math.sign,
  isFinite: (x) => (Number.isFinite(x) ? 1 : 0),
};

const ORDINARY = [-3.5, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2.25, 3.5];

export interface UnaryCase {
  readonly op: UnaryOp;
  /** Edge inputs beyond the ordinary ones: NaN (propagation), ±Inf, large magnitudes, domain edges. */
  readonly special: readonly number[];
  /** Why these specials, for the test title. */
  readonly note: string;
  /** Inputs in (lo, hi) only (sin/cos: arguments where float32 range reduction is exact enough). */
  readonly ordinary?: readonly number[];
}

/**
 * step(NaN) and sign(NaN) are not pinned (backends and frameworks differ: PyTorch's relu gradient
 * passes NaN inputs' gradients through); silu/gelu/geluTanh at ±Inf are not pinned either.
 */
export const UNARY_CASES: readonly UnaryCase[] = [
  { op: 'neg', special: [NaN, Infinity, -Infinity, 1e30, -1e30], note: 'NaN, ±Inf, ±1e30' },
  { op: 'abs', special: [NaN, Infinity, -Infinity, -1e30], note: 'NaN, ±Inf, −1e30' },
  { op: 'exp', special: [NaN, Infinity, -Infinity, 100, -100, 88, -87], note: 'exp(100) overflows to Inf, exp(−100) underflows' },
  { op: 'log', special: [NaN, Infinity, 0, -1, 1e-30, 1e30], note: 'log 0 = −Inf, log −1 = NaN' },
  { op: 'sqrt', special: [NaN, Infinity, -1, 1e-30, 1e30], note: 'sqrt −1 = NaN', ordinary: [0, 1e-3, 0.5, 1, 2.25, 3.5, 100] },
  {
    op: 'rsqrt',
    special: [NaN, Infinity, 0, -1, 1e-30, 1e30],
    note: 'rsqrt 0 = Inf, rsqrt −1 = NaN',
    ordinary: [1e-3, 0.5, 1, 2.25, 3.5, 100],
  },
  { op: 'reciprocal', special: [NaN, Infinity, -Infinity, 1e30, -1e-30], note: '1/±Inf = 0' },
  { op: 'square', special: [NaN, Infinity, -Infinity, 1e30, -1e20], note: 'square 1e30 overflows to Inf' },
  { op: 'relu', special: [NaN, Infinity, -Infinity, 1e30, -1e30], note: 'relu(NaN) = NaN' },
  { op: 'step', special: [Infinity, -Infinity, 1e-30, -1e-30], note: '±Inf, ±1e-30' },
  { op: 'sigmoid', special: [NaN, Infinity, -Infinity, 100, -100, 1e30, -1e30], note: 'saturation without NaN' },
  { op: 'silu', special: [NaN, 100, -100, 1e30, -1e30], note: 'large magnitudes' },
  { op: 'gelu', special: [NaN, 10, -10, 100, -100, 1e30, -1e30], note: 'erf form, large magnitudes' },
  { op: 'geluTanh', special: [NaN, 10, -10, 100, -100], note: 'tanh approximation, large magnitudes' },
  { op: 'tanh', special: [NaN, Infinity, -Infinity, 100, -100, 1e30], note: 'saturation without NaN' },
  { op: 'erf', special: [NaN, Infinity, -Infinity, 6, -6, 1e-30, 100], note: '±Inf, tails' },
  { op: 'sin', special: [NaN, 10, -10, 1e-30], note: 'NaN', ordinary: [-3, -1.5, -0.5, 0, 0.5, 1.5, 3, 6] },
  { op: 'cos', special: [NaN, 10, -10, 1e-30], note: 'NaN', ordinary: [-3, -1.5, -0.5, 0, 0.5, 1.5, 3, 6] },
  { op: 'sign', special: [Infinity, -Infinity, 1e-30, -1e-30], note: '±Inf, ±1e-30' },
  { op: 'isFinite', special: [NaN, Infinity, -Infinity, 3e38, -3e38], note: 'NaN and ±Inf are not finite' },
];

export function unaryInputs(c: UnaryCase): number[] {
  return [...(c.ordinary ?? ORDINARY), ...c.special];
}

export const BINARY_HOST: Readonly<Record<BinaryOp, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  max: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  min: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)),
  pow: Math.pow,
  greater: (a, b) => (a > b ? 1 : 0),
  equal: (a, b) => (a === b ? 1 : 0),
};

export interface BinaryCase {
  readonly id: string;
  readonly op: BinaryOp;
  readonly a: readonly number[];
  readonly b: readonly number[];
  readonly note: string;
}

const ORD_A = [1.5, -2, 0.25, 3, -0.75, 7];
const ORD_B = [0.5, 4, -0.25, 3, 2, -1.5];

/** Same-shape cases, ordinary values followed by each op's edge cases. */
export const BINARY_CASES: readonly BinaryCase[] = [
  {
    id: 'add',
    op: 'add',
    a: [...ORD_A, Infinity, Infinity, NaN, 3e38],
    b: [...ORD_B, -Infinity, 1, 1, 3e38],
    note: 'Inf − Inf = NaN, overflow to Inf',
  },
  {
    id: 'sub',
    op: 'sub',
    a: [...ORD_A, Infinity, NaN, -3e38],
    b: [...ORD_B, Infinity, 0, 3e38],
    note: 'Inf − Inf = NaN, overflow to −Inf',
  },
  { id: 'mul', op: 'mul', a: [...ORD_A, 0, Infinity, NaN, 1e30], b: [...ORD_B, Infinity, -2, 0, 1e30], note: '0·Inf = NaN, overflow' },
  { id: 'div', op: 'div', a: [...ORD_A, 1, -1, 0, NaN, 1e-30], b: [...ORD_B, 0, 0, 0, 1, 1e30], note: '±1/0 = ±Inf, 0/0 = NaN, underflow' },
  { id: 'max', op: 'max', a: [...ORD_A, NaN, 1, -Infinity], b: [...ORD_B, 1, NaN, -1e38], note: 'NaN from either side propagates' },
  { id: 'min', op: 'min', a: [...ORD_A, NaN, 1, Infinity], b: [...ORD_B, 1, NaN, 1e38], note: 'NaN from either side propagates' },
  {
    id: 'pow',
    op: 'pow',
    a: [1.5, 2, 0.25, 3, 4, 7, 0, 0, 2, 1e10],
    b: [0.5, 4, -0.25, 3, 0.5, -1.5, 0, -1, 200, 4],
    note: '0⁰ = 1, 0⁻¹ = Inf, overflow',
  },
  {
    id: 'pow.negative-base',
    op: 'pow',
    a: [-2, -2, -8, -0.5],
    b: [3, -2, 1 / 3, 2],
    note: 'negative base: integer exponents are real, others NaN',
  },
  {
    id: 'greater',
    op: 'greater',
    a: [...ORD_A, NaN, 1, Infinity, 2],
    b: [...ORD_B, 1, NaN, 3e38, 2],
    note: 'NaN compares false, float32 1/0',
  },
  {
    id: 'equal',
    op: 'equal',
    a: [...ORD_A, NaN, Infinity, 0, 2],
    b: [...ORD_B, NaN, Infinity, -0, 2],
    note: 'NaN ≠ NaN, 0 = −0, Inf = Inf',
  },
];

export interface BroadcastCase {
  readonly id: string;
  readonly op: BinaryOp;
  readonly a: readonly number[];
  readonly b: readonly number[];
}

/** Broadcasting layouts (non-commutative ops, so swapped operands would be caught). */
export const BROADCAST_CASES: readonly BroadcastCase[] = [
  { id: 'row', op: 'sub', a: [4, 3], b: [3] },
  { id: 'column', op: 'div', a: [4, 3], b: [4, 1] },
  { id: 'both-ways', op: 'sub', a: [3, 1, 4], b: [2, 1] },
  { id: 'scalar-right', op: 'sub', a: [2, 3], b: [] },
  { id: 'scalar-left', op: 'div', a: [], b: [2, 3] },
  { id: 'scalars', op: 'sub', a: [], b: [] },
  { id: 'size-one', op: 'sub', a: [1], b: [5] },
  { id: 'rank4', op: 'max', a: [2, 1, 3, 1], b: [1, 4, 1, 5] },
  { id: 'middle', op: 'pow', a: [2, 3, 4], b: [2, 1, 4] },
];
