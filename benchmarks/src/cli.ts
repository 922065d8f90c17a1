/**
 * `node dist/cli.js [--suite <name>]... [--quick] [--size <name>] [--list]`: runs benchmark suites and writes
 * benchmarks/results/latest.json and docs/benchmarks.md at the repository root.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchSuite } from './harness.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

async function main(): Promise<number> {
  const { values } = parseArgs({
    // pnpm forwards a literal `--` in `pnpm bench -- --suite x`; strict parsing would reject it.
    args: process.argv.slice(2).filter((a) => a !== '--'),
    options: {
      suite: { type: 'string', multiple: true, default: [] },
      quick: { type: 'boolean', default: false },
      // A model size for the suites that have several (llm: '1b', a Llama-3.2-1B shape with bfloat16 weights).
      size: { type: 'string' },
      list: { type: 'boolean', default: false },
    },
  });
  const suites = await loadSuites();
  if (values.list) {
    for (const s of suites) console.log(s.name);
    return 0;
  }
  const { runBenchmarks } = await import('./run.js');
  const summary = await runBenchmarks({
    suites,
    only: values.suite.flatMap((s) => s.split(',')).filter((s) => s.length > 0),
    quick: values.quick,
    ...(values.size ? { size: values.size } : {}),
    resultsPath: join(REPO_ROOT, 'benchmarks/results/latest.json'),
    markdownPath: join(REPO_ROOT, 'docs/benchmarks.md'),
    log: (line) => console.log(line),
  });
  console.log(`${summary.ran.length} suites ran, ${summary.skipped.length} skipped, ${summary.failed.length} failed`);
  return summary.failed.length > 0 ? 1 : 0;
}

async function loadSuites(): Promise<BenchSuite[]> {
  try {
    // A module namespace lists exports by name, not source order; sort by suite name so the order is explicit.
    const suites = Object.values(await import('./suites/index.js')) as BenchSuite[];
    return suites.sort((a, b) => a.name.localeCompare(b.name));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new Error(`a workspace package is not built; run \`pnpm build\` first (${(error as Error).message})`);
    }
    throw error;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
