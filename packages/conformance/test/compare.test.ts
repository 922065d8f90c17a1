import { describe, expect, it } from 'vitest';
import { assertClose, assertEqual, ConformanceMismatch } from '../src/compare.js';

const tol = { rtol: 1e-5, atol: 1e-6 };

describe('assertClose', () => {
  it('treats NaN and ±Inf as exact', () => {
    expect(() => assertClose('x', [NaN, Infinity, -Infinity], [NaN, Infinity, -Infinity], { tolerance: tol })).not.toThrow();
    expect(() => assertClose('x', [0], [NaN], { tolerance: tol })).toThrow(/element 0 is 0, expected NaN/);
    expect(() => assertClose('x', [NaN], [0], { tolerance: tol })).toThrow(ConformanceMismatch);
    expect(() => assertClose('x', [3e38], [Infinity], { tolerance: tol })).toThrow(/expected Infinity/);
    expect(() => assertClose('x', [-Infinity], [Infinity], { tolerance: tol })).toThrow();
  });

  it('bounds the error by atol + rtol·max(|expected|, magnitude)', () => {
    expect(() => assertClose('x', [1.000009], [1], { tolerance: tol })).not.toThrow();
    expect(() => assertClose('x', [1.00002], [1], { tolerance: tol })).toThrow(/element 0/);
    // a cancelled sum: tiny result, large terms — the magnitude widens the bound
    expect(() => assertClose('x', [1e-3], [0], { tolerance: tol })).toThrow();
    expect(() => assertClose('x', [1e-3], [0], { tolerance: tol, magnitude: [1000] })).not.toThrow();
  });

  it('names the worst element and shows short arrays', () => {
    expect(() => assertClose('matmul', [1, 2, 9], [1, 2, 3], { tolerance: tol })).toThrow(
      /matmul: element 2 is 9, expected 3[\s\S]*actual\s+\[1, 2, 9\]/,
    );
  });

  it('max-relative compares the largest difference with the largest value', () => {
    expect(() => assertClose('x', [100, 1e-3], [100, 0], { tolerance: tol, metric: 'max-relative' })).not.toThrow();
    expect(() => assertClose('x', [100, 1], [100, 0], { tolerance: tol, metric: 'max-relative' })).toThrow(/max\|a − b\| \/ max\|b\|/);
  });

  it('rejects a length mismatch', () => {
    expect(() => assertClose('x', [1, 2], [1], { tolerance: tol })).toThrow(/2 values, expected 1/);
  });
});

describe('assertEqual', () => {
  it('is exact, with NaN equal to NaN', () => {
    expect(() => assertEqual('x', [1, NaN, -0], [1, NaN, 0])).not.toThrow();
    expect(() => assertEqual('x', [1 + 2 ** -23], [1])).toThrow(/expected exactly 1/);
  });
});
