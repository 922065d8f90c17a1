/**
 * Trainer checkpoints on a failing disk: each counted write, fsync, rename, mkdir or open-for-write of a
 * checkpoint save fails in turn (ENOSPC, EIO, EACCES, EROFS taking turns — injected, tests run as root):
 * the previous checkpoint stays byte-identical, no half checkpoint appears, and a typed OutputError names
 * the checkpoint path. Temporaries a killed save leaves are cleaned up (or finished) by the next save.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, OutputError } from '@dorajs/core';
import { faultPoints, faultyFileSystem, type FileSystem } from '@dorajs/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Trainer } from '../src/index.js';
import { blobs, collateFor, type Example, Mlp, testBackend } from './helpers.js';

const FEATURES = 6;
const CLASSES = 3;
let backend: Backend;
let root: string;
const train = blobs(40, FEATURES, CLASSES, 1);

beforeAll(async () => {
  backend = await testBackend();
  root = await mkdtemp(join(tmpdir(), 'dorajs-ckpt-faults-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function trainer(outputDir: string, maxSteps: number, fs?: FileSystem, seed = 3) {
  return new Trainer<Example>({
    model: new Mlp(backend, FEATURES, 8, CLASSES, 3),
    objective: 'classification',
    trainDataset: train,
    collate: collateFor(backend, FEATURES),
    args: { batchSize: 4, lr: 0.05, seed, maxSteps, saveStep: 2, outputDir },
    ...(fs ? { fs } : {}),
  });
}

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[join(e.parentPath, e.name).slice(dir.length)] = (await readFile(join(e.parentPath, e.name))).toString('base64');
  }
  return out;
}

describe('trainer checkpoints under injected faults', () => {
  it('the previous checkpoint survives every fault point; the error is an OutputError naming the checkpoint', async () => {
    const dir = join(root, 'faults');
    const first = trainer(dir, 2);
    await first.train();
    first.dispose();
    const before = await tree(dir);
    expect(Object.keys(before)).toContain('/checkpoint-2/trainer_state.json');

    const counting = faultyFileSystem();
    const count = trainer(join(root, 'count'), 2, counting.fs);
    await count.train();
    count.dispose();
    const codes = ['ENOSPC', 'EIO', 'EACCES', 'EROFS'];
    let failures = 0;
    for (const [turn, failAt] of faultPoints(counting.calls).entries()) {
      const code = codes[turn % codes.length]!;
      const faulty = faultyFileSystem({ failAt, code });
      // Another seed: a checkpoint mixing old and new files would not equal the old one.
      const t = trainer(dir, 2, faulty.fs, 4);
      const error = await t.train().then(
        () => undefined,
        (e: unknown) => e,
      );
      t.dispose();
      if (error === undefined) {
        expect(faulty.calls[failAt - 1]).toMatch(/^sync /); // a best-effort folder fsync: the new one is complete
        await rm(dir, { recursive: true });
        const again = trainer(dir, 2);
        await again.train();
        again.dispose();
      } else {
        failures++;
        expect(error, `${code} at ${faulty.calls[failAt - 1]}`).toBeInstanceOf(OutputError);
        expect((error as OutputError).path.startsWith(join(dir, 'checkpoint-2'))).toBe(true);
        expect((error as Error).message).toContain(code);
      }
      expect(await readdir(dir)).toEqual(['checkpoint-2']);
      expect(await tree(dir)).toEqual(before);
    }
    expect(failures).toBeGreaterThan(5);
  });

  it('temporaries of a killed save are removed, and a swap cut between its renames is finished, by the next save', async () => {
    const dir = join(root, 'killed');
    await mkdir(dir, { recursive: true });
    const dead = 2 ** 22 + 777;
    await mkdir(join(dir, `.checkpoint-8.tmp-${dead}-ab`));
    await writeFile(join(dir, `.checkpoint-8.tmp-${dead}-ab`, 'optimizer.safetensors'), 'partial');
    await mkdir(join(dir, `.checkpoint-6.new-${dead}-cd`));
    await writeFile(join(dir, `.checkpoint-6.new-${dead}-cd`, 'trainer_state.json'), '{}');
    await mkdir(join(dir, `.checkpoint-6.old-${dead}-cd`));
    const t = trainer(dir, 2);
    await t.train();
    t.dispose();
    expect((await readdir(dir)).sort()).toEqual(['checkpoint-2', 'checkpoint-6']);
  });
});
