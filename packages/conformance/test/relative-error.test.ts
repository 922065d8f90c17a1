import { describe, expect, it } from 'vitest';
import { relativeError } from '../src/index.js';

describe('relativeError (max|a − b| / max|b|, the one measure every test uses)', () => {
  it('divides the largest difference by the largest expected magnitude', () => {
    expect(relativeError([1, 2, 4.5], [1, 2, 4])).toBeCloseTo(0.5 / 4, 15);
    expect(relativeError([-3, 0], [-4, 1])).toBeCloseTo(1 / 4, 15);
  });

  it('is the absolute error against all zeros, and 0 for two all-zero tensors', () => {
    expect(relativeError([0, 0], [0, 0])).toBe(0);
    expect(relativeError([1e-7, 0], [0, 0])).toBe(1e-7);
  });

  it('is Infinity on a length mismatch', () => {
    expect(relativeError([1, 2], [1, 2, 3])).toBe(Infinity);
  });

  it('takes special values exactly: NaN needs NaN, ±∞ the same infinity, a finite value a finite one', () => {
    expect(relativeError([Number.NaN, 1], [Number.NaN, 1])).toBe(0);
    expect(relativeError([Infinity, -Infinity, 2], [Infinity, -Infinity, 2])).toBe(0);
    expect(relativeError([1, 1], [Number.NaN, 1])).toBe(Infinity);
    expect(relativeError([-Infinity], [Infinity])).toBe(Infinity);
    expect(relativeError([Number.NaN, 1], [1, 1])).toBe(Infinity);
    expect(relativeError([Infinity, 1], [1, 1])).toBe(Infinity);
  });

  it('never returns NaN, so a `toBeLessThan(tol)` check fails on a broken result', () => {
    const bad = [Number.NaN, Infinity, -Infinity];
    for (const x of bad) for (const e of [0, 1, ...bad]) expect(Number.isNaN(relativeError([x], [e]))).toBe(false);
  });

  it('ignores infinite expected values for the scale (they are matched exactly)', () => {
    expect(relativeError([Infinity, 1.5], [Infinity, 1])).toBeCloseTo(0.5, 15);
  });
});
