// @ts-check
/**
 * `pnpm test:all`: every package's tests (one at a time), then typecheck (sources and tests), publint and attw
 * on every package, `biome ci` over the tree and the TypeDoc API reference (`pnpm docs`, warnings as errors),
 * with the output streamed as it comes. CI judges the closing line, so it is always a plain `N passed, M failed`:
 * vitest tests counted from each package's summary, one check per package typecheck and lint, one for biome, one for TypeDoc, and one failure for any
 * task that failed without a counted test failure (a build error, a crash before vitest's summary).
 * Both steps always run (--continue) so one failure does not hide the rest; the exit code is 1 on any failure.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TURBO = join(ROOT, 'node_modules/.bin/turbo');
/** The closing line, kept for `.ci/run` to repeat after pnpm's own exit message. */
const SUMMARY_FILE = join(ROOT, '.turbo/test-all-summary.txt');
const COMMON = ['--continue=dependencies-successful', '--summarize', '--log-prefix=task', '--log-order=stream', '--ui=stream'];

/** @typedef {{ passed: number, failed: number, skipped: number }} Counts */
/** @typedef {{ taskId: string, task: string, package: string, execution?: { exitCode?: number | null } }} TaskSummary */

/**
 * Runs turbo, echoing its output, and returns the output text, exit code and parsed run summary.
 * @param {string[]} args
 * @returns {Promise<{ output: string, code: number, tasks: TaskSummary[] }>}
 */
function turbo(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(TURBO, ['run', ...args, ...COMMON], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      process.stderr.write(chunk);
      output += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ output, code: code ?? 1, tasks: readSummary(output) }));
  });
}

/** @param {string} output @returns {TaskSummary[]} */
function readSummary(output) {
  const path = /Summary:\s+(\S+\.json)/.exec(stripAnsi(output))?.[1];
  if (path === undefined) return [];
  try {
    return JSON.parse(readFileSync(path, 'utf8')).tasks ?? [];
  } catch {
    return [];
  }
}

/**
 * Sums vitest's "Tests  1 failed | 8 passed | 2 skipped (11)" lines per package.
 * @param {string} output @returns {Map<string, Counts>}
 */
function vitestCounts(output) {
  /** @type {Map<string, Counts>} */
  const byPackage = new Map();
  for (const line of stripAnsi(output).split('\n')) {
    const match = /^([^\s:]+):test: +Tests +(.+?) +\(\d+\)\s*$/.exec(line);
    if (match === null) continue;
    const [, pkg = '', parts = ''] = match;
    const counts = byPackage.get(pkg) ?? { passed: 0, failed: 0, skipped: 0 };
    for (const [, n = '0', kind] of parts.matchAll(/(\d+) (passed|failed|skipped|todo)/g)) {
      if (kind === 'passed') counts.passed += Number(n);
      else if (kind === 'failed') counts.failed += Number(n);
      else counts.skipped += Number(n);
    }
    byPackage.set(pkg, counts);
  }
  return byPackage;
}

/** @param {string} text */
function stripAnsi(text) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the ANSI sequences this strips
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}

/**
 * A tool from node_modules/.bin over the whole tree (`biome ci .`, `typedoc`), echoed as it runs; resolves
 * to its exit code.
 * @param {string} bin @param {string[]} args
 * @returns {Promise<number>}
 */
function runTool(bin, args) {
  return new Promise((resolve) => {
    const child = spawn(join(ROOT, 'node_modules/.bin', bin), args, {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', () => resolve(127));
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/** @param {TaskSummary} t */
const failedTask = (t) => t.execution?.exitCode !== undefined && t.execution.exitCode !== null && t.execution.exitCode !== 0;

rmSync(SUMMARY_FILE, { force: true });
const tests = await turbo(['test', '--concurrency=1']);
const lint = await turbo(['typecheck', 'lint:pack']);
const biome = await runTool('biome', ['ci', '.', '--colors=off']);
// typedoc.json sets treatWarningsAsErrors: a warning fails the check.
const typedoc = await runTool('typedoc', []);

const report = [];
let passed = 0;
let failed = 0;
const counts = vitestCounts(tests.output);
for (const [pkg, c] of counts) {
  report.push(`  ${pkg}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`);
  passed += c.passed;
  failed += c.failed;
}
for (const t of lint.tasks.filter((t) => t.task === 'lint:pack' || t.task === 'typecheck')) {
  const ok = !failedTask(t);
  report.push(`  ${t.package}: ${t.task} ${ok ? 'passed' : 'FAILED'}`);
  if (ok) passed += 1;
  else failed += 1;
}
report.push(`  biome ci: ${biome === 0 ? 'passed' : `FAILED (exit ${biome})`}`);
if (biome === 0) passed += 1;
else failed += 1;
report.push(`  typedoc (docs/api, warnings as errors): ${typedoc === 0 ? 'passed' : `FAILED (exit ${typedoc})`}`);
if (typedoc === 0) passed += 1;
else failed += 1;
// A build that fails runs (and fails) in both steps: count it once.
const otherFailures = new Map([...tests.tasks, ...lint.tasks].filter(failedTask).map((t) => [t.taskId, t]));
for (const t of otherFailures.values()) {
  if (t.task === 'lint:pack' || t.task === 'typecheck' || (t.task === 'test' && (counts.get(t.package)?.failed ?? 0) > 0)) continue;
  report.push(`  ${t.taskId}: FAILED (exit ${t.execution?.exitCode}) without a counted test failure`);
  failed += 1;
}
for (const [name, run] of [
  ['tests', tests],
  ['typecheck + lint:pack', lint],
]) {
  if (typeof run === 'object' && run.code !== 0 && failed === 0) {
    report.push(`  turbo ${name}: exited ${run.code} with no task failure recorded`);
    failed += 1;
  }
}

console.log(`\ntest:all summary\n${report.join('\n')}`);
const closing = `${passed} passed, ${failed} failed`;
mkdirSync(dirname(SUMMARY_FILE), { recursive: true });
writeFileSync(SUMMARY_FILE, `${closing}\n`);
console.log(closing);
process.exitCode = failed > 0 || tests.code !== 0 || lint.code !== 0 || biome !== 0 || typedoc !== 0 ? 1 : 0;
