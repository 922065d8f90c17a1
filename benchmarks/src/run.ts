/** Runs the selected suites and updates the results file and the markdown report. */
import { mkdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { SuiteSkipped, type BenchSuite } from './harness.js';
import { describeMachine, machineLine } from './machine.js';
import { renderMarkdown } from './report.js';
import { loadResults, mergeResults, writeAtomically, type SuiteOutcome, type SuiteRun } from './results.js';

export interface RunOptions {
  suites: readonly BenchSuite[];
  /** Suite names to run; all when empty. */
  only: readonly string[];
  quick: boolean;
  /** `--size NAME` (llm: '1b'), passed to every suite. */
  size?: string;
  resultsPath: string;
  markdownPath: string;
  log: (line: string) => void;
}

export interface RunSummary {
  ran: string[];
  skipped: string[];
  failed: string[];
}

export async function runBenchmarks(opts: RunOptions): Promise<RunSummary> {
  const selected = selectSuites(opts.suites, opts.only);
  const previous = await loadResults(opts.resultsPath); // fail before spending minutes measuring
  const now: SuiteRun = { date: new Date().toISOString(), machine: describeMachine(), quick: opts.quick };
  opts.log(`machine: ${machineLine(now.machine)}`);
  const outcomes: SuiteOutcome[] = [];
  const summary: RunSummary = { ran: [], skipped: [], failed: [] };
  for (const suite of selected) {
    opts.log(`\n== ${suite.name}${opts.quick ? ' (quick)' : ''}`);
    const startedAt = new Date().toISOString();
    const loadAverage = Math.round(loadavg()[0]! * 100) / 100;
    try {
      const results = await suite.run({ quick: opts.quick, ...(opts.size ? { size: opts.size } : {}) });
      for (const r of results) {
        const extra = [r.gflops && `${r.gflops.toFixed(2)} GFLOP/s`, r.ratio && `${r.ratio.toFixed(2)}× vs ${r.ratioTo}`];
        opts.log(`${r.name} ${r.backend} ${r.shape} t=${r.threads}: ${r.medianMs.toFixed(3)} ms ${extra.filter(Boolean).join(', ')}`);
      }
      outcomes.push({ suite: suite.name, run: { ...now, date: startedAt, loadAverage }, results });
      summary.ran.push(suite.name);
    } catch (error) {
      if (error instanceof SuiteSkipped) {
        opts.log(`skipped: ${error.message}`);
        summary.skipped.push(suite.name);
      } else {
        opts.log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        summary.failed.push(suite.name);
      }
    }
  }
  if (outcomes.length > 0) {
    const merged = mergeResults(previous, outcomes, now);
    await mkdir(dirname(opts.resultsPath), { recursive: true });
    await writeAtomically(opts.resultsPath, `${JSON.stringify(merged, null, 2)}\n`);
    await mkdir(dirname(opts.markdownPath), { recursive: true });
    await writeAtomically(opts.markdownPath, renderMarkdown(merged));
    opts.log(`\nwrote ${opts.resultsPath} and ${opts.markdownPath}`);
  }
  return summary;
}

export function selectSuites(all: readonly BenchSuite[], only: readonly string[]): BenchSuite[] {
  if (only.length === 0) return [...all];
  const unknown = only.filter((name) => !all.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown suite ${unknown.map((n) => `'${n}'`).join(', ')}; known: ${all.map((s) => s.name).join(', ')}`);
  }
  return all.filter((s) => only.includes(s.name));
}
