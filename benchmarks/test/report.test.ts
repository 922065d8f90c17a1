import { describe, expect, it } from 'vitest';
import type { Machine } from '../src/machine.js';
import { renderMarkdown } from '../src/report.js';
import type { ResultsFile } from '../src/results.js';

const machine: Machine = { cpu: 'Test CPU', cores: 2, memoryGiB: 8, node: 'v20.0.0', platform: 'linux-x64' };
const other: Machine = { ...machine, cpu: 'Other CPU' };

function file(runs: ResultsFile['suites']): ResultsFile {
  return {
    date: '2026-01-02T00:00:00.000Z',
    machine,
    suites: runs,
    results: Object.keys(runs).map((suite) => ({ suite, name: 'op', backend: 'cpu', shape: '1', medianMs: 1234.5, threads: 1 })),
  };
}

describe('renderMarkdown', () => {
  it('states the machine, and per suite any different machine, quick runs and CPU contention', () => {
    const md = renderMarkdown(
      file({
        calm: { date: '2026-01-01T10:00:00.000Z', machine, quick: false, loadAverage: 0.5 },
        busy: { date: '2026-01-01T11:00:00.000Z', machine, quick: true, loadAverage: 7.5 },
        elsewhere: { date: '2025-12-31T11:00:00.000Z', machine: other, quick: false },
      }),
    );
    expect(md).toContain('Last updated 2026-01-02 on Test CPU, 2 cores, 8 GiB, Node 20.0.0, linux-x64.');
    expect(md).toContain('## calm\n\nMeasured 2026-01-01.\n');
    expect(md).toContain(
      'Measured 2026-01-01 (quick run: fewer sizes and iterations; load average 7.5 on 2 cores: other processes competed, times are pessimistic).',
    );
    expect(md).toContain('Measured 2025-12-31 on Other CPU, 2 cores');
    expect(md).toContain('| op | cpu | 1 | 1 | 1235 |');
  });

  it('escapes pipes in notes', () => {
    const f = file({ s: { date: '2026-01-01T00:00:00.000Z', machine, quick: false } });
    f.results[0]!.notes = 'a | b';
    expect(renderMarkdown(f)).toContain('a \\| b');
  });
});
