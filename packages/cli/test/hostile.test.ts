/**
 * The CLI against hostile paths and files: outputs that are inputs, folders, or under files are refused
 * before any work with one typed line; ids files that are named pipes or nested deep are refused at once.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dora, FIXTURES, idsJson, tempDir } from './helpers.js';

const base = join(FIXTURES, 'gpt2', 'base');
const adapter = join(FIXTURES, 'gpt2', 'adapter');
const lastLine = (s: string) => s.trim().split('\n').at(-1)!;

describe('dora run / merge: outputs checked before any work', () => {
  it('run --out cannot be the model weights, the ids file, or a folder; the input is untouched', async () => {
    const dir = tempDir();
    const ids = idsJson('gpt2', dir);
    writeFileSync(join(dir, 'f'), 'x');
    const weights = join(base, 'model.safetensors');
    const before = readFileSync(weights);
    for (const [out, says] of [
      [weights, `dora: FileError: ${weights}: lies inside the input folder ${base}: choose another output`],
      [ids, `dora: FileError: ${ids}: is one of the inputs (${ids}): choose another output`],
      [dir, `dora: FileError: ${dir}: is a folder, not a file`],
      [
        join(dir, 'f', 'x.safetensors'),
        `dora: FileError: ${join(dir, 'f', 'x.safetensors')}: cannot be created: ${join(dir, 'f')} is not a folder`,
      ],
    ] as const) {
      const r = await dora('run', '--model', base, '--ids', ids, '--out', out, '--backend', 'cpu');
      expect(r.code).toBe(1);
      expect(lastLine(r.stderr)).toBe(says);
    }
    expect(readFileSync(weights)).toEqual(before);
  });

  it('merge --out cannot lie inside the model or adapter folder, or be a file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'f'), 'x');
    for (const [out, says] of [
      [join(adapter, 'merged'), 'lies inside the input folder'],
      [join(dir, 'f'), 'exists and is not a folder'],
    ] as const) {
      const r = await dora('merge', '--model', base, '--adapter', adapter, '--out', out, '--backend', 'cpu');
      expect(r.code).toBe(1);
      expect(lastLine(r.stderr)).toMatch(new RegExp(`^dora: FileError: .*${says}`));
    }
  });
});

describe('dora run: ids files from strangers', () => {
  it('a named pipe as the ids file (JSON or safetensors) is refused at once', async () => {
    const dir = tempDir();
    for (const name of ['ids.json', 'ids.safetensors']) {
      const fifo = join(dir, name);
      execFileSync('mkfifo', [fifo]);
      const r = await dora('run', '--model', base, '--ids', fifo, '--out', join(dir, 'o.safetensors'), '--backend', 'cpu');
      expect(r.code).toBe(1);
      expect(lastLine(r.stderr)).toMatch(/not a regular file \(a named pipe\)$/);
    }
  });

  it('ids nested deeper than [[…]] are refused at the first byte too deep, naming the file', async () => {
    const dir = tempDir();
    const ids = join(dir, 'deep.json');
    writeFileSync(ids, `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    const r = await dora('run', '--model', base, '--ids', ids, '--out', join(dir, 'o.safetensors'), '--backend', 'cpu');
    expect(lastLine(r.stderr)).toBe(
      `dora: InputFileError: ${ids}: invalid ids JSON at byte 2: nested more than 2 levels deep (expected [[…], …])`,
    );
  });
});

describe('leftovers of killed runs', () => {
  it('dora run removes a dead writer’s temporary beside --out and says so on one stderr line', async () => {
    const dir = tempDir();
    const out = join(dir, 'logits.safetensors');
    // A pid that has exited: its temporaries are stale.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const stale = join(dir, `.logits.safetensors.tmp-${dead}-0123456789ab`);
    writeFileSync(stale, 'half a file');
    const r = await dora('run', '--model', base, '--ids', idsJson('gpt2', dir), '--out', out, '--backend', 'cpu');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('dora: recovered: '))).toEqual([
      `dora: recovered: removed ${stale} (incomplete output of a killed run)`,
    ]);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(out)).toBe(true);
  });
});
