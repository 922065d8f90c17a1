/**
 * The shapes of the suite: a tier is a titled list of cases; a case is an id, a title and an async body
 * that drives a `CaseContext`. Tiers are plain data, so more can be appended (see
 * `BackendConformanceOptions.tiers`) without touching the runner.
 */
import type { AnyTypedArray, Backend, DType, TensorInfo } from '@dorajs/core';
import type { CloseOptions, Metric, Tolerance } from './compare.js';
import type { SeededRandom } from './prng.js';

export interface ConformanceCase {
  /** Stable and unique across the suite, `<tier>/<kernel>.<variant>`; `skip` keys use it. */
  readonly id: string;
  readonly title: string;
  run(ctx: CaseContext): Promise<void>;
}

export interface ConformanceTier {
  readonly id: string;
  readonly title: string;
  readonly cases: readonly ConformanceCase[];
}

export type HostValues = AnyTypedArray | readonly number[];

export interface ExpectOptions {
  readonly metric?: Metric;
  /** Per-element size of what was accumulated (see compare.ts). */
  readonly magnitude?: ArrayLike<number>;
  /** Multiplies the suite's rtol and atol for this check (for long accumulations or transcendental ops). */
  readonly looseness?: number;
}

/** What a case body gets. Everything it uploads or wraps is released when the case ends. */
export interface CaseContext {
  /** The backend under test. */
  readonly backend: Backend;
  /** The reference backend, created on first use. */
  reference(): Promise<Backend>;
  readonly tolerance: Tolerance;
  /** A seeded PRNG: the same seed gives the same inputs on every machine. */
  random(seed: number): SeededRandom;
  /** True when the backend under test can store `dtype`. */
  supports(dtype: DType): boolean;
  /** Uploads host values (float32 unless `dtype` says otherwise) to `on` (default: the backend under test). */
  tensor(values: HostValues, shape: readonly number[], dtype?: DType, on?: Backend): TensorInfo;
  /** Takes ownership of a handle a kernel returned, so it is released after the case. */
  own(handle: unknown, shape: readonly number[], dtype: DType, on?: Backend): TensorInfo;
  read(t: TensorInfo, on?: Backend): Promise<AnyTypedArray>;
  /** Downloads `t` and compares it with float64 expectations (rounded to float32 first). */
  expectClose(what: string, t: TensorInfo, expected: ArrayLike<number>, options?: ExpectOptions, on?: Backend): Promise<void>;
  /** Downloads `t` and requires exact equality (NaN equals NaN). */
  expectEqual(what: string, t: TensorInfo, expected: ArrayLike<number>, on?: Backend): Promise<void>;
  /** Ends the case as skipped with `reason` (shown in the test report). */
  skip(reason: string): never;
  /** The comparison options this context would use, for direct calls to `assertClose`. */
  closeOptions(options?: ExpectOptions): CloseOptions;
}
