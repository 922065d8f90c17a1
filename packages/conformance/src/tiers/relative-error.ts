/**
 * The project's error measure, max|a − b| / max|b| (a: actual, b: expected), used by every parity and
 * kernel test. Decided once here:
 * - special values are exact: an expected NaN needs a NaN, an expected ±∞ the same infinity, a finite
 *   expectation a finite result; anything else is Infinity (never NaN, so `toBeLessThan` fails);
 * - the scale max|b| is taken over the finite expected values; where it is zero (b all zeros, e.g. an
 *   untouched zero bias) the measure is the absolute error max|a − b|, so two all-zero tensors match;
 * - a length mismatch is Infinity.
 */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    const x = a[i]!;
    const e = b[i]!;
    if (!Number.isFinite(e)) {
      if (Number.isNaN(e) ? !Number.isNaN(x) : x !== e) return Infinity;
      continue;
    }
    if (!Number.isFinite(x)) return Infinity;
    diff = Math.max(diff, Math.abs(x - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return scale === 0 ? diff : diff / scale;
}
