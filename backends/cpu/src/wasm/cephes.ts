/**
 * Cephes' single-precision elementary functions (expf, logf, tanhf, erff/erfcf) as float32x4 expression
 * emitters: the coefficients are Cephes', the range reduction and special values as each comment says.
 * `elementwise-wasm.ts` builds its unary kernels from these.
 */
import { type Code, type Expr, type Local, V, v128 } from './encoder.js';

/** Cephes' erff: erf x ≈ x·T(x²) on |x| ≤ 1. */
export const ERF_T = [
  7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2, 1.128358514861418e-1, -3.7612625824233e-1,
  1.12837916572671,
];
/** Cephes' erfcf: erfc a ≈ e^−a²·(1/a)·P(1/a²) on [1, 2), R(1/a²) beyond. */
const ERFC_P = [
  2.326819970068386e-2, -1.387039388740657e-1, 3.687424674597105e-1, -5.824733027278666e-1, 6.210004621745983e-1, -4.944515323274145e-1,
  3.404879937665872e-1, -2.741127028184656e-1, 5.638259427386472e-1,
];
const ERFC_R = [
  -1.047766399936249e1, 1.297719955372516e1, -7.495518717768503, 2.921019019210786, -1.0152652792027, 4.218463358204948e-1,
  -2.820767439740514e-1, 5.641895067754075e-1,
];

/** Horner's rule over float32 lanes, highest coefficient first. */
export function vPoly(x: Expr, coefficients: readonly number[]): Expr {
  let p: Expr = V.constF32(coefficients[0]!);
  for (const k of coefficients.slice(1)) p = V.add(V.mul(p, x), V.constF32(k));
  return p;
}

/**
 * erfc y for y = a·√k ≥ 1, a ≥ 0 exact (k = 1 for erf, ½ for gelu's x/√2; lanes with y below 1 get a finite
 * value the caller discards): e^−y² times Cephes' rational tail in 1/y. e^−y² is computed from a as
 * e^−k·h²·e^−k·(a−h)(a+h), h = a's top 12 significant bits, so h² is exact and neither a²'s nor y's rounding
 * enters the exponent (e^−y² would amplify it y²-fold). y is capped at 10.5, where erfc is below the
 * smallest float32 (and ∞ − ∞ never happens). NaN stays NaN (min/max carry it).
 */
export function vErfcTail(c: Code, a: Local, k: 1 | 0.5): Expr {
  const [b, h, e1, e2, q] = c.localsOf(v128, 5);
  const root = Math.sqrt(k);
  c.set(b, V.min(V.max(a, V.constF32(1 / root)), V.constF32(10.5 / root)));
  c.set(h, V.and(b, V.constI32(-4096)));
  c.set(e1, V.mul(V.mul(h, h), V.constF32(-k)));
  c.set(e1, vExp(e1, e1));
  c.set(e2, V.mul(V.mul(V.sub(b, h), V.add(b, h)), V.constF32(-k)));
  c.set(e2, vExp(e2, e2));
  c.set(q, V.div(V.constF32(1), k === 1 ? b : V.mul(b, V.constF32(root))));
  const z = V.mul(q, q);
  const p = V.bitselect(vPoly(z, ERFC_P), vPoly(z, ERFC_R), V.gt(q, V.constF32(0.5)));
  return V.mul(V.mul(V.mul(e1, e2), q), p);
}

/** Cephes' logf polynomial: ln(1 + t) ≈ t − t²/2 + t³·P(t) on t ∈ [√½ − 1, √2 − 1). */
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
  3.3333331174e-1,
];

/**
 * ln x in float32 lanes (Cephes' logf): x = 2^e·m with m in [√½, √2) from the bits (subnormals scaled by 2²³
 * first), then t = m − 1 and ln x = t − t²/2 + t³·P(t) + e·ln2 (ln2 split in two). 0 → −∞, +∞ → +∞,
 * negatives and NaN → NaN, as Math.log.
 */
export function vLog(c: Code, x: Local): Expr {
  const [xs, e, m, t, z, small] = c.localsOf(v128, 6);
  const sub = V.lt(x, V.constF32(2 ** -126));
  c.set(xs, V.bitselect(V.mul(x, V.constF32(2 ** 23)), x, sub));
  // frexp: m in [½, 1), e its exponent (−23 more for a scaled subnormal).
  c.set(e, V.iadd(V.isub(V.ishrS(xs, 23), V.constI32(126)), V.bitselect(V.constI32(-23), V.zero, sub)));
  c.set(m, V.or(V.and(xs, V.constI32(0x007fffff)), V.constI32(0x3f000000)));
  c.set(small, V.lt(m, V.constF32(Math.SQRT1_2)));
  // Below √½: m·2 − 1 and one less in e (the all-ones mask is −1).
  c.set(e, V.iadd(e, small));
  c.set(t, V.bitselect(V.sub(V.add(m, m), V.constF32(1)), V.sub(m, V.constF32(1)), small));
  c.set(z, V.mul(t, t));
  let p: Expr = V.constF32(LOG_P[0]!);
  for (const k of LOG_P.slice(1)) p = V.add(V.mul(p, t), V.constF32(k));
  c.set(m, V.fromI32(e));
  const y = V.sub(V.add(V.mul(V.mul(p, t), z), V.mul(m, V.constF32(-2.1219444e-4))), V.mul(z, V.constF32(0.5)));
  c.set(t, V.add(V.add(t, y), V.mul(m, V.constF32(0.693359375))));
  c.set(t, V.bitselect(V.constF32(-Infinity), t, V.eq(x, V.zero)));
  c.set(t, V.bitselect(V.constF32(Infinity), t, V.eq(x, V.constF32(Infinity))));
  return V.bitselect(V.constF32(Number.NaN), t, V.or(V.lt(x, V.zero), V.ne(x, x)));
}

/** Cephes' tanhf polynomial: tanh x ≈ x + x·z·P(z), z = x², on |x| < 0.625. */
const TANH_P = [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1];

/** Cephes' expf coefficients: e^r ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2, within 1 ulp of float32. */
const EXP_P = [1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];

/**
 * e^x in float32 lanes: x = n·ln2 + r (ln2 split in two for an exact product), a degree-7 polynomial for e^r,
 * and 2^n applied as two exponent-field factors so that results down to the smallest subnormal survive.
 * Overflow gives +∞ and −∞ gives 0 through the arithmetic (x is clamped to [−104, 89] first); NaN stays NaN.
 * `t` is scratch and may be `x`.
 */
export function vExp(x: Expr, t: Local): Expr {
  return (cc: Code) => {
    const clamped = V.min(V.max(x, V.constF32(-104)), V.constF32(89));
    cc.set(t, clamped);
    // The caller's locals are not ours to use, so the rest is one expression over t (n recomputed by V8's CSE).
    const n = V.nearest(V.mul(t, V.constF32(Math.LOG2E)));
    const r = V.sub(V.sub(t, V.mul(n, V.constF32(0.693359375))), V.mul(n, V.constF32(-2.1219444e-4)));
    let p: Expr = V.constF32(EXP_P[0]!);
    for (const k of EXP_P.slice(1)) p = V.add(V.mul(p, r), V.constF32(k));
    const poly = V.add(V.add(V.mul(V.mul(p, r), r), r), V.constF32(1));
    const ni = V.truncSat(n);
    const half = V.ishrS(ni, 1);
    const bias = V.constI32(127);
    const s1 = V.ishl(V.iadd(half, bias), 23);
    const s2 = V.ishl(V.iadd(V.isub(ni, half), bias), 23);
    cc.push(V.mul(V.mul(poly, s1), s2));
  };
}

/** erf x in float32 lanes (Cephes' erff/erfcf); `t` is a scratch vector local. */
export function vErf(c: Code, x: Local, t: Local): Expr {
  const one = V.constF32(1);
  // |x| ≤ 1: x·T(x²); beyond: ±(1 − erfc|x|). NaN stays NaN, ±∞ → ±1.
  const a = c.local(v128);
  c.set(a, V.abs(x));
  c.set(t, vErfcTail(c, a, 1));
  const far = V.or(V.sub(one, t), V.and(x, V.constF32(-0)));
  return V.bitselect(V.mul(x, vPoly(V.mul(x, x), ERF_T)), far, V.le(a, one));
}

/** tanh x in float32 lanes (Cephes' tanhf); `t` is a scratch vector local. */
export function vTanh(c: Code, x: Local, t: Local): Expr {
  const one = V.constF32(1);
  // Cephes' tanhf: below |x| = 0.625 an odd polynomial (no cancellation near 0, −0 kept); above,
  // 1 − 2/(e^2|x| + 1) with x's sign (e^2|x| saturates to 1 exactly far out; NaN stays NaN).
  const a = c.local(v128);
  c.set(a, V.abs(x));
  const far = V.sub(one, V.div(V.constF32(2), V.add(vExp(V.add(a, a), t), one)));
  const z = V.mul(x, x);
  let p: Expr = V.constF32(TANH_P[0]!);
  for (const k of TANH_P.slice(1)) p = V.add(V.mul(p, z), V.constF32(k));
  // x·(1 + z·P) rather than x + x·z·P: the same within an ulp, and tanh(−0) stays −0.
  const near = V.mul(x, V.add(one, V.mul(p, z)));
  return V.bitselect(V.or(far, V.and(x, V.constF32(-0))), near, V.ge(a, V.constF32(0.625)));
}
