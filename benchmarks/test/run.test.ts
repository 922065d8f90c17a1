import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SuiteSkipped, type BenchResult, type BenchSuite } from '../src/harness.js';
import type { ResultsFile } from '../src/results.js';
import { runBenchmarks } from '../src/run.js';

const row = (backend: string, medianMs: number): BenchResult => ({ name: 'op', backend, shape: '2x2', medianMs, threads: 1 });

const fixed = (name: string, results: BenchResult[]): BenchSuite => ({ name, run: async () => results });

let folder: string;
let paths: { resultsPath: string; markdownPath: string };
const lines: string[] = [];
beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dorajs-bench-'));
  paths = { resultsPath: join(folder, 'results/latest.json'), markdownPath: join(folder, 'docs/benchmarks.md') };
  lines.length = 0;
});
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const run = (suites: BenchSuite[], only: string[] = [], quick = false) =>
  runBenchmarks({ suites, only, quick, ...paths, log: (l) => lines.push(l) });
const readResults = async () => JSON.parse(await readFile(paths.resultsPath, 'utf8')) as ResultsFile;

describe('runBenchmarks', () => {
  it('writes every suite to latest.json and a table per suite to the markdown', async () => {
    const summary = await run([
      fixed('alpha', [row('cpu', 1.5)]),
      fixed('beta', [{ ...row('gpu', 0.25), gflops: 12.5, ratio: 6, ratioTo: 'cpu' }]),
    ]);
    expect(summary).toEqual({ ran: ['alpha', 'beta'], skipped: [], failed: [] });
    const file = await readResults();
    expect(file.results.map((r) => [r.suite, r.backend])).toEqual([
      ['alpha', 'cpu'],
      ['beta', 'gpu'],
    ]);
    expect(Object.keys(file.suites)).toEqual(['alpha', 'beta']);
    expect(file.machine.cores).toBeGreaterThan(0);
    const md = await readFile(paths.markdownPath, 'utf8');
    expect(md).toContain('## alpha');
    expect(md).toContain('## beta');
    expect(md).toContain('| op | gpu | 2x2 | 1 | 0.250 | 12.50 |  | 6.00× vs cpu |  |');
    expect(md).toContain(`${file.machine.cores} cores`);
  });

  it('running one suite replaces only its rows and keeps the others', async () => {
    await run([fixed('alpha', [row('cpu', 1)]), fixed('beta', [row('gpu', 2)])]);
    await run([fixed('alpha', [row('cpu', 9), row('wasm', 3)]), fixed('beta', [row('gpu', 100)])], ['alpha'], true);
    const file = await readResults();
    expect(file.results.map((r) => [r.suite, r.backend, r.medianMs])).toEqual([
      ['alpha', 'cpu', 9],
      ['alpha', 'wasm', 3],
      ['beta', 'gpu', 2],
    ]);
    expect(file.suites.alpha!.quick).toBe(true);
    expect(file.suites.beta!.quick).toBe(false);
    expect(await readFile(paths.markdownPath, 'utf8')).toContain('quick run');
  });

  it('a skipped suite keeps its old rows; a failing suite is reported and does not stop the others', async () => {
    await run([fixed('gpu', [row('webgpu', 1)])]);
    const skipping: BenchSuite = { name: 'gpu', run: () => Promise.reject(new SuiteSkipped('no adapter')) };
    const failing: BenchSuite = { name: 'broken', run: () => Promise.reject(new Error('kernel exploded')) };
    const summary = await run([skipping, failing, fixed('ok', [row('cpu', 1)])]);
    expect(summary).toEqual({ ran: ['ok'], skipped: ['gpu'], failed: ['broken'] });
    expect(lines.join('\n')).toContain('skipped: no adapter');
    expect(lines.join('\n')).toContain('FAILED: Error: kernel exploded');
    expect((await readResults()).results.map((r) => r.suite)).toEqual(['gpu', 'ok']);
  });

  it('rejects an unknown suite name before running anything', async () => {
    let ran = false;
    const suite: BenchSuite = { name: 'real', run: async () => ((ran = true), []) };
    await expect(run([suite], ['typo'])).rejects.toThrow("unknown suite 'typo'; known: real");
    expect(ran).toBe(false);
  });

  it('refuses to overwrite a results file it cannot read', async () => {
    await run([fixed('alpha', [row('cpu', 1)])]);
    await writeFile(paths.resultsPath, '{"not": "results"}');
    await expect(run([fixed('alpha', [row('cpu', 2)])])).rejects.toThrow('is not a benchmark results file');
    expect(await readFile(paths.resultsPath, 'utf8')).toBe('{"not": "results"}');
  });
});
