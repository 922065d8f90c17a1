/**
 * kill -9 at many points: `dora merge`, `dora finetune --output` and trainer checkpoints run in a child
 * process (test/kill/driver.mjs) whose output writes go through core's counting file system, injected as
 * a parameter; with KILL_AT=N the child SIGKILLs itself just before the N-th write, fsync, rename, mkdir or
 * open for writing. After each kill the output is the old one, the new one, or missing with leftovers the
 * next run restores — never a mix — and once recovered nothing is left beside it. A trainer killed at
 * any point and resumed from its last checkpoint ends bit-identical to a run never killed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { faultPoints, recoverOutput } from '@dorajs/core/node';
import { describe, expect, it } from 'vitest';
import { FIXTURES, tempDir, tinyLlamaFolder } from './helpers.js';

const DRIVER = fileURLToPath(new URL('./kill/driver.mjs', import.meta.url));
const TIMEOUT = 900_000;
/** DORA_KILL_SWEEP=all kills at every fault point (first and last of each run of identical calls). */
const FULL_SWEEP = process.env['DORA_KILL_SWEEP'] === 'all';

/**
 * Where to kill. The normal run takes every point that changes the folder structure (mkdir, rename), the
 * first and last call, and the first write of each file; a full sweep takes every fault point.
 */
function killPoints(calls: readonly string[]): number[] {
  const all = faultPoints(calls);
  if (FULL_SWEEP) return all;
  return all.filter((p, i) => {
    const call = calls[p - 1]!;
    return (
      p === 1 ||
      p === calls.length ||
      /^(rename|mkdir) /.test(call) ||
      (call.startsWith('write ') && !calls[p - 2]?.startsWith('write ')) ||
      i === 0
    );
  });
}

interface Driven {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  /** The counted calls of a run that finished. */
  readonly calls: string[];
}

function drive(args: readonly string[], killAt = 0): Driven {
  const countFile = join(tempDir('dora-kill-count-'), 'calls.json');
  const r = spawnSync(process.execPath, [DRIVER, countFile, ...args], {
    env: { ...process.env, KILL_AT: String(killAt) },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const calls = existsSync(countFile) ? (JSON.parse(readFileSync(countFile, 'utf8')) as string[]) : [];
  return { status: r.status, signal: r.signal, stderr: r.stderr, calls };
}

type Tree = ReadonlyMap<string, Buffer>;

/** Every file under `dir` (relative path → bytes), or null when `dir` does not exist. */
function tree(dir: string): Tree | null {
  if (!existsSync(dir)) return null;
  const out = new Map<string, Buffer>();
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.set(join(e.parentPath, e.name).slice(dir.length), readFileSync(join(e.parentPath, e.name)));
  }
  return out;
}

function same(a: Tree | null, b: Tree | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.has(k) || Buffer.compare(v, b.get(k)!) !== 0) return false;
  return true;
}

function restore(dir: string, contents: Tree): void {
  rmSync(dir, { recursive: true, force: true });
  for (const [rel, bytes] of contents) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), bytes);
  }
}

/** Temporaries of writers of `path` beside it (`.NAME.tmp-…`, `.new-…`, `.old-…`). */
function leftovers(path: string): string[] {
  return readdirSync(dirname(path)).filter((n) => n.startsWith(`.${basename(path)}.`));
}

function expectKilled(r: Driven, point: number): void {
  expect(r.signal, `kill point ${point}: ${r.stderr.slice(-500)}`).toBe('SIGKILL');
}

describe('kill -9 during dora merge', () => {
  it('leaves no output or the whole merged model; the next merge cleans up, says so, and writes it', { timeout: TIMEOUT }, async () => {
    const dir = tempDir();
    const model = join(FIXTURES, 'llama', 'base');
    const adapter = join(FIXTURES, 'llama', 'adapter');
    const merge = (out: string) => ['cli', 'merge', '--model', model, '--adapter', adapter, '--out', out, '--backend', 'cpu'];
    const reference = drive(merge(join(dir, 'reference')));
    expect(reference.status, reference.stderr).toBe(0);
    const expected = tree(join(dir, 'reference'));
    const points = killPoints(reference.calls);
    expect(points.length).toBeGreaterThanOrEqual(8);
    let recoveredLines = 0;
    for (const point of points) {
      const out = join(dir, `merged-${point}`);
      expectKilled(drive(merge(out), point), point);
      const after = tree(out);
      expect(after === null || after.size === 0 || same(after, expected), `kill point ${point}: a partial output`).toBe(true);
      if (after !== null && after.size > 0) {
        // Complete: only a finished swap's leftovers may remain, and recovery removes them.
        await recoverOutput(out);
      } else {
        // The next run recovers what the kill left, reports it on stderr, and writes the model.
        const stale = leftovers(out).length;
        const next = drive(merge(out));
        const lines = next.stderr.split('\n').filter((l) => l.startsWith('dora: recovered: '));
        expect(lines.length, `kill point ${point}: ${next.stderr}`).toBe(stale);
        recoveredLines += lines.length;
        if (next.status !== 0) {
          // The killed run had finished: its output is restored whole, and merge never overwrites an output.
          expect(next.stderr, `kill point ${point}`).toMatch(/dora: recovered: restored .* \(a killed run had finished writing it\)/);
          expect(next.stderr.trim().split('\n').at(-1), `kill point ${point}`).toMatch(/^dora: OutputExistsError: /);
        }
      }
      expect(same(tree(out), expected), `kill point ${point}: not the merged model`).toBe(true);
      expect(leftovers(out), `kill point ${point}`).toEqual([]);
    }
    expect(recoveredLines).toBeGreaterThan(0);
  });
});

describe('kill -9 during dora finetune --output', () => {
  it('the output folder is the old adapter or the new one, never a mix', { timeout: TIMEOUT }, async () => {
    const dir = tempDir();
    const model = tinyLlamaFolder(dir);
    const data = join(dir, 'train.jsonl');
    writeFileSync(data, ['a b c a', 'b c a b', 'c a b c'].map((text) => JSON.stringify({ text })).join('\n'));
    const finetune = (out: string, seed: number) => [
      'cli',
      'finetune',
      ...['--model', model, '--data', data, '--output', out, '--backend', 'cpu'],
      ...['--max-steps', '1', '--batch-size', '2', '--eval-step', '0', '--seed', String(seed)],
    ];
    const out = join(dir, 'adapter');
    const first = drive(finetune(out, 1));
    expect(first.status, first.stderr).toBe(0);
    const oldTree = tree(out)!;
    const newRun = drive(finetune(join(dir, 'new'), 2));
    expect(newRun.status, newRun.stderr).toBe(0);
    const newTree = tree(join(dir, 'new'))!;
    expect(same(oldTree, newTree)).toBe(false);
    const calls = newRun.calls.map((c) => c.replaceAll(join(dir, 'new'), out));
    const points = killPoints(calls);
    expect(points.length).toBeGreaterThan(8);
    for (const point of points) {
      restore(out, oldTree);
      expectKilled(drive(finetune(out, 2), point), point);
      const after = tree(out);
      expect(after === null || same(after, oldTree) || same(after, newTree), `kill point ${point}: a mixed adapter folder`).toBe(true);
      // What the next run does first.
      await recoverOutput(out);
      const recovered = tree(out);
      expect(same(recovered, oldTree) || same(recovered, newTree), `kill point ${point}: not restored`).toBe(true);
      expect(leftovers(out), `kill point ${point}`).toEqual([]);
    }
  });
});

describe('kill -9 during trainer checkpoints', () => {
  it('every checkpoint is whole, and resuming from the last one ends bit-identical to a run never killed', { timeout: TIMEOUT }, () => {
    const dir = tempDir();
    const reference = drive(['trainer', join(dir, 'reference'), '6', join(dir, 'reference.bin')]);
    expect(reference.status, reference.stderr).toBe(0);
    const expected = tree(join(dir, 'reference'))!;
    const snapshot = readFileSync(join(dir, 'reference.bin'));
    const points = killPoints(reference.calls);
    expect(points.length).toBeGreaterThan(20);
    for (const point of points) {
      const out = join(dir, `run-${point}`);
      const bin = join(dir, `run-${point}.bin`);
      expectKilled(drive(['trainer', out, '6', bin], point), point);
      for (const name of existsSync(out) ? readdirSync(out).filter((n) => !n.startsWith('.')) : []) {
        const whole = new Map([...expected].filter(([k]) => k.startsWith(`/${name}/`)).map(([k, v]) => [k.slice(name.length + 1), v]));
        expect(same(tree(join(out, name)), whole), `kill point ${point}: ${name} is not whole`).toBe(true);
      }
      const resumed = drive(['trainer', out, '6', bin]);
      expect(resumed.status, `kill point ${point}: ${resumed.stderr}`).toBe(0);
      expect(Buffer.compare(readFileSync(bin), snapshot), `kill point ${point}: weights differ after resume`).toBe(0);
      expect(same(tree(out), expected), `kill point ${point}: checkpoints differ after resume`).toBe(true);
      expect(
        readdirSync(out).filter((n) => n.startsWith('.')),
        `kill point ${point}`,
      ).toEqual([]);
    }
  });
});
