/**
 * The benchmark contract. A suite is a file `src/suites/<name>.ts` whose default export is a `BenchSuite`,
 * re-exported by one line in `src/suites/index.ts`. `pnpm bench` runs every suite; results land in
 * `benchmarks/results/latest.json` and `docs/benchmarks.md`.
 */

export interface BenchResult {
  /** What was measured, e.g. 'matmul'. */
  name: string;
  /** Backend (or reference implementation) that ran it, e.g. 'cpu', 'naive-js'. */
  backend: string;
  /** Problem size, e.g. '1024x1024x1024'. */
  shape: string;
  medianMs: number;
  gflops?: number;
  gbps?: number;
  /** Speed relative to `ratioTo` (> 1 means this row is faster). */
  ratio?: number;
  ratioTo?: string;
  threads: number;
  notes?: string;
}

export interface BenchSuite {
  name: string;
  /** `size`: `--size NAME`, for suites with several model sizes (llm: '1b'); others ignore it. */
  run(opts: { quick: boolean; size?: string }): Promise<BenchResult[]>;
}

/** Thrown by a suite that cannot run here (no GPU adapter, say): reported as skipped, old rows kept. */
export class SuiteSkipped extends Error {
  override name = 'SuiteSkipped';
}

export interface TimeOptions {
  /** Untimed calls first (JIT, caches, lazy GPU pipelines). Default 2. */
  warmup?: number;
  /** At least this many timed calls. Default 5. */
  iters?: number;
  /** Keep timing until the samples add up to this many milliseconds (capped at 1000 samples). Default 0. */
  minMs?: number;
}

export interface Timing {
  medianMs: number;
  samples: number[];
}

const MAX_SAMPLES = 1000;

/**
 * Median wall time of `fn`, awaited when it returns a promise (so a GPU suite includes its sync).
 * The median, not the mean, so one GC pause or scheduler hiccup does not move the number.
 */
export function timeIt(fn: () => unknown, opts: TimeOptions = {}): Promise<Timing> {
  return timeWithClock(fn, opts, () => performance.now());
}

/** `timeIt` with an injectable clock (tests drive it deterministically). */
export async function timeWithClock(fn: () => unknown, opts: TimeOptions, now: () => number): Promise<Timing> {
  const warmup = opts.warmup ?? 2;
  const iters = Math.max(1, opts.iters ?? 5);
  const minMs = opts.minMs ?? 0;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  let total = 0;
  while (samples.length < iters || (total < minMs && samples.length < MAX_SAMPLES)) {
    const start = now();
    await fn();
    const elapsed = now() - start;
    samples.push(elapsed);
    total += elapsed;
  }
  return { medianMs: median(samples), samples };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** GFLOP/s for `flops` floating-point operations done in `ms` milliseconds. */
export function gflopsOf(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}

/** GB/s for `bytes` moved in `ms` milliseconds. */
export function gbpsOf(bytes: number, ms: number): number {
  return bytes / (ms * 1e6);
}
