import { describe, expect, it } from 'vitest';
import { erf, erfc, gelu, geluTanh, silu } from '../src/kernels/scalar-math.js';

/** erf by its all-positive series e^(−x²)·Σ 2ⁿx^(2n+1)/(2n+1)!!, accurate to a few ulp for |x| ≤ 6. */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 1000 && Math.abs(term) > Math.abs(sum) * 1e-18; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

/** erfc by its continued fraction (modified Lentz), accurate for x ≥ 2. */
function erfcFraction(x: number): number {
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 10_000; n++) {
    d = 1 / (x + (n / 2) * d);
    c = x + n / 2 / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  // e^(−x²) split at z = fround(x) (z² is exact), so the exponent loses no bits to the rounding of x².
  const z = Math.fround(x);
  return (Math.exp(-z * z) * Math.exp(-(x - z) * (x + z))) / Math.sqrt(Math.PI) / f;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('float64 erf / erfc', () => {
  it('erf matches the series to 1e-14 on [-6, 6] (every branch of the rational approximation)', () => {
    let worst = 0;
    for (let x = -6; x <= 6; x += 0.00731) if (x !== 0) worst = Math.max(worst, rel(erf(x), erfSeries(x)));
    expect(worst).toBeLessThan(1e-14);
  });

  it('erfc keeps relative accuracy deep in the tail (no 1 − erf cancellation)', () => {
    let worst = 0;
    for (let x = 2; x < 26; x += 0.0137) worst = Math.max(worst, rel(erfc(x), erfcFraction(x)));
    expect(worst).toBeLessThan(1e-14);
    expect(erfc(10)).toBeCloseTo(2.088487583762545e-45, 58);
  });

  it('handles special values', () => {
    expect(erf(0)).toBe(0);
    expect(Object.is(erf(-0), -0)).toBe(true);
    expect(erf(Infinity)).toBe(1);
    expect(erf(-Infinity)).toBe(-1);
    expect(erf(NaN)).toBeNaN();
    expect(erfc(-Infinity)).toBe(2);
    expect(erfc(Infinity)).toBe(0);
    expect(erf(1e-300)).toBeCloseTo(1.1283791670955126e-300, 310);
  });
});

describe('activations', () => {
  it('gelu is x·Φ(x) with an accurate negative tail and limits at ±∞', () => {
    expect(rel(gelu(1), 0.8413447460685429)).toBeLessThan(1e-15);
    // Φ(−10) = 7.6198530241605e-24: 1 + erf would have cancelled to 0.
    expect(rel(gelu(-10), -10 * 7.619853024160527e-24)).toBeLessThan(1e-13);
    expect(gelu(Infinity)).toBe(Infinity);
    expect(Object.is(gelu(-Infinity), -0)).toBe(true);
    expect(gelu(NaN)).toBeNaN();
  });

  it("geluTanh equals PyTorch's 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) where that form is accurate", () => {
    const torchForm = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    for (const x of [-3, -1, -0.5, 0.1, 0.7, 2, 5]) expect(rel(geluTanh(x), torchForm(x))).toBeLessThan(1e-13);
    expect(geluTanh(-10)).toBeLessThan(0); // the tanh form rounds to exactly 0 here
    expect(Object.is(geluTanh(-Infinity), -0)).toBe(true);
  });

  it('silu has the limits x and 0', () => {
    expect(silu(1000)).toBe(1000);
    expect(Object.is(silu(-Infinity), -0)).toBe(true);
    expect(silu(Infinity)).toBe(Infinity);
  });
});
