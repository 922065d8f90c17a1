/**
 * The fixed-seed fuzz run of the normal test run: 10 000 inputs per target, each in a worker watched from
 * outside (hang > 1 s, memory), checked for typed errors and round trips. `pnpm fuzz` runs the same targets
 * for as long as asked. The self-test proves the watchdog catches what a target cannot report itself.
 */
import { describe, expect, it } from 'vitest';
import { runFuzz } from '../src/run.js';
import { FUZZ_TARGETS } from '../src/targets.js';

const SEED = 20261207;
const COUNT = 10_000;

describe('fuzz (fixed seed, 10 000 inputs per target)', () => {
  it.each(FUZZ_TARGETS)('%s: only typed errors, no hang, bounded memory, round trips', async (target) => {
    const report = await runFuzz({ target, seed: SEED, count: COUNT });
    expect(report.failures).toEqual([]);
    expect(report.inputs).toBe(COUNT);
    expect(report.peakRssGrowthMb).toBeLessThan(512);
    // Both verdicts occur: the mutants reach past the first check, and most of them are refused.
    const accepted = report.verdicts['accepted'] ?? 0;
    expect(accepted).toBeGreaterThan(COUNT / 50);
    expect(accepted).toBeLessThan(COUNT / 2);
  });
});

describe('the fuzz harness itself', () => {
  it('reports a synchronous hang, an untyped error, heap and ArrayBuffer growth, and carries on', async () => {
    // A longer deadline than the real runs' 1 s: on a loaded machine the memory bombs may take over a
    // second to reach the bound, and they must be reported as memory, not as hangs.
    const report = await runFuzz({ target: 'selftest', seed: 1, count: 12, memoryMb: 128, hangMs: 3000, confirmHangs: 1 });
    expect(
      report.failures.map((f) => [f.index, f.kind]),
      JSON.stringify(report.failures),
    ).toEqual([
      [3, 'hang'],
      [5, 'untyped'],
      [7, 'memory'],
      [9, 'memory'],
    ]);
    expect(report.failures[1]!.message).toBe('TypeError: not a typed error');
    expect(report.inputs).toBe(12);
  });
});
