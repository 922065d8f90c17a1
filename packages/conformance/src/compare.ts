/**
 * How results are compared. Special values are exact: an expected NaN needs a NaN, an expected ±Inf the
 * same infinity, and a finite expectation a finite result. Finite values pass when
 *
 *   |actual − expected| ≤ atol + rtol · max(|expected|, magnitude)
 *
 * where `magnitude` (per element, optional) is the size of what was summed to get it, e.g. Σ|aᵢₖ·bₖⱼ|
 * for a matmul: rounding error is proportional to that, not to a result that cancelled to near zero.
 * The 'max-relative' metric is the project's max|a − b| / max|b| ≤ rtol, for comparing two backends
 * whose outputs of accumulating kernels legitimately differ in summation order.
 */
export interface Tolerance {
  readonly rtol: number;
  readonly atol: number;
}

export type Metric = 'elementwise' | 'max-relative';

export interface CloseOptions {
  readonly tolerance: Tolerance;
  readonly metric?: Metric;
  readonly magnitude?: ArrayLike<number>;
}

export class ConformanceMismatch extends Error {
  override name = 'ConformanceMismatch';
}

const fmt = (v: number) => (Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : String(v));

/** Throws a ConformanceMismatch naming `what` and the worst element when `actual` is not close enough. */
export function assertClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, options: CloseOptions): void {
  const { rtol, atol } = options.tolerance;
  if (actual.length !== expected.length) {
    throw new ConformanceMismatch(`${what}: ${actual.length} values, expected ${expected.length}`);
  }
  // Special values first: they are exact under every metric.
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const ok = Number.isNaN(e) ? Number.isNaN(a) : !Number.isFinite(e) ? a === e : Number.isFinite(a);
    if (!ok) throw new ConformanceMismatch(`${what}: element ${i} is ${fmt(a)}, expected ${fmt(e)}${context(actual, expected)}`);
  }
  if (options.metric === 'max-relative') {
    let diff = 0;
    let scale = 0;
    let worst = 0;
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i]!;
      if (!Number.isFinite(e)) continue;
      const d = Math.abs(actual[i]! - e);
      if (d > diff) [diff, worst] = [d, i];
      scale = Math.max(scale, Math.abs(e));
    }
    if (diff > atol + rtol * scale) {
      throw new ConformanceMismatch(
        `${what}: max|a − b| / max|b| = ${diff / (scale || 1)} > rtol ${rtol} (worst at element ${worst})${context(actual, expected)}`,
      );
    }
    return;
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    if (!Number.isFinite(e)) continue;
    const bound = atol + rtol * Math.max(Math.abs(e), options.magnitude ? Math.abs(options.magnitude[i]!) : 0);
    const excess = Math.abs(actual[i]! - e) - bound;
    if (excess > worstExcess) [worst, worstExcess] = [i, excess];
  }
  if (worst >= 0) {
    const e = expected[worst]!;
    const m = options.magnitude ? `, magnitude ${options.magnitude[worst]}` : '';
    throw new ConformanceMismatch(
      `${what}: element ${worst} is ${fmt(actual[worst]!)}, expected ${fmt(e)} (|diff| ${Math.abs(actual[worst]! - e)} > atol ${atol} + rtol ${rtol}·scale${m})${context(actual, expected)}`,
    );
  }
}

/** Requires bit-for-bit equality (layout kernels, casts, round trips). */
export function assertEqual(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  if (actual.length !== expected.length) throw new ConformanceMismatch(`${what}: ${actual.length} values, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(a === e || (Number.isNaN(a) && Number.isNaN(e)))) {
      throw new ConformanceMismatch(`${what}: element ${i} is ${fmt(a)}, expected exactly ${fmt(e)}${context(actual, expected)}`);
    }
  }
}

function context(actual: ArrayLike<number>, expected: ArrayLike<number>): string {
  if (expected.length <= 12)
    return `\n  actual   [${Array.from(actual, fmt).join(', ')}]\n  expected [${Array.from(expected, fmt).join(', ')}]`;
  return '';
}
