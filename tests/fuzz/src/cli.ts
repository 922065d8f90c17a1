/**
 * `pnpm fuzz [--target NAME|all] [--seed N] [--count N] [--from N] [--hang-ms N] [--memory-mb N] [--out DIR]`:
 * long fuzz runs. Prints one JSON report per target; each failing input the worker could send is written
 * to DIR (default tests/fuzz/crashes) as TARGET-SEED-INDEX.bin, and every failure can be rerun alone with
 * `--target TARGET --seed SEED --from INDEX --count 1`. Exits 1 on any failure.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFuzz } from './run.js';
import { FUZZ_TARGETS, TARGETS } from './targets.js';

const USAGE = 'usage: pnpm fuzz [--target NAME|all] [--seed N] [--count N] [--from N] [--hang-ms N] [--memory-mb N] [--out DIR]';

function parseArgs(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    if (arg === '--help' || arg === '-h') {
      console.log(`${USAGE}\ntargets: ${FUZZ_TARGETS.join(', ')}`);
      process.exit(0);
    }
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (match === null) throw new Error(`unexpected argument '${arg}'\n${USAGE}`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${match[1]} needs a value\n${USAGE}`);
    out[match[1]!] = value;
  }
  return out;
}

function integer(args: Record<string, string>, name: string, fallback: number): number {
  const text = args[name];
  if (text === undefined) return fallback;
  const value = Number(text.replaceAll('_', ''));
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer, got '${text}'`);
  return value;
}

const args = parseArgs(process.argv.slice(2));
const known = new Set(['target', 'seed', 'count', 'from', 'hang-ms', 'memory-mb', 'out']);
for (const key of Object.keys(args)) if (!known.has(key)) throw new Error(`unknown option --${key}\n${USAGE}`);
const targetArg = args['target'] ?? 'all';
const targets = targetArg === 'all' ? FUZZ_TARGETS : targetArg.split(',');
for (const t of targets) if (TARGETS[t] === undefined) throw new Error(`no target '${t}' (targets: ${FUZZ_TARGETS.join(', ')})`);
const seed = integer(args, 'seed', Date.now() % 2 ** 31);
const count = integer(args, 'count', 100_000);
const from = integer(args, 'from', 0);
const outDir = args['out'] ?? fileURLToPath(new URL('../crashes/', import.meta.url));

let failed = 0;
for (const target of targets) {
  const report = await runFuzz({
    target,
    seed,
    count,
    from,
    hangMs: integer(args, 'hang-ms', 1000),
    memoryMb: integer(args, 'memory-mb', 512),
    onProgress: (done) => process.stderr.write(`\r${target}: ${done}/${count}`),
    onFailure: (failure, input) => {
      process.stderr.write(`\n${target} #${failure.index}: ${failure.kind}: ${failure.message}\n`);
      if (input !== undefined) {
        mkdirSync(outDir, { recursive: true });
        writeFileSync(join(outDir, `${target}-${seed}-${failure.index}.bin`), input);
      }
    },
  });
  process.stderr.write(`\r${target}: ${report.inputs}/${count}\n`);
  console.log(JSON.stringify(report));
  failed += report.failures.length;
}
process.exitCode = failed > 0 ? 1 : 0;
