/**
 * `benchmarks/results/latest.json`: every suite's latest rows. Running some suites replaces only their
 * rows, so one suite can be re-measured without re-running (or losing) the others.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { BenchResult } from './harness.js';
import type { Machine } from './machine.js';

export interface StoredResult extends BenchResult {
  suite: string;
}

export interface SuiteRun {
  date: string;
  machine: Machine;
  quick: boolean;
  /**
   * 1-minute load average when the suite started (absent in older files). Above the core count, other
   * processes competed for the CPU and the times are pessimistic.
   */
  loadAverage?: number;
}

export interface ResultsFile {
  /** When and where the file was last written. */
  date: string;
  machine: Machine;
  /** When and where each suite's rows were measured (suites may come from different runs). */
  suites: Record<string, SuiteRun>;
  results: StoredResult[];
}

export interface SuiteOutcome {
  suite: string;
  run: SuiteRun;
  results: BenchResult[];
}

/** Replaces the rows of each suite in `outcomes`, keeping every other suite's rows and order. */
export function mergeResults(previous: ResultsFile | undefined, outcomes: readonly SuiteOutcome[], now: SuiteRun): ResultsFile {
  const bySuite = new Map<string, StoredResult[]>();
  const runs: Record<string, SuiteRun> = {};
  for (const r of previous?.results ?? []) bySuite.set(r.suite, [...(bySuite.get(r.suite) ?? []), r]);
  for (const [suite, run] of Object.entries(previous?.suites ?? {})) {
    runs[suite] = run;
    if (!bySuite.has(suite)) bySuite.set(suite, []);
  }
  for (const { suite, run, results } of outcomes) {
    bySuite.set(
      suite,
      results.map((r) => ({ suite, ...r })),
    );
    runs[suite] = run;
  }
  return { date: now.date, machine: now.machine, suites: runs, results: [...bySuite.values()].flat() };
}

export async function loadResults(path: string): Promise<ResultsFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const value: unknown = JSON.parse(text);
  if (!isResultsFile(value)) {
    throw new Error(`${path} is not a benchmark results file; move it away or fix it (nothing was run)`);
  }
  return value;
}

/** Atomic, so an interrupted run never leaves a half-written results file. */
export async function writeAtomically(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(temp, text);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function isResultsFile(value: unknown): value is ResultsFile {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<ResultsFile>;
  return (
    typeof v.date === 'string' &&
    typeof v.machine === 'object' &&
    typeof v.suites === 'object' &&
    v.suites !== null &&
    Array.isArray(v.results) &&
    v.results.every((r) => typeof r === 'object' && r !== null && typeof r.suite === 'string')
  );
}
