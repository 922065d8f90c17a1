/**
 * saveModel under injected I/O faults (each write, fsync, rename, mkdir and open-for-write failing in
 * turn with ENOSPC, EIO, EACCES and EROFS): no output folder appears, nothing is left beside it, and a
 * typed OutputError names the output path. Also: an output that is an input is refused before any work,
 * and a checkpoint declaring a huge extra tensor blames the input file, not the output folder.
 */
import { mkdir, open, readdir, rm, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileError, OutputError, SafetensorsError } from '@dorajs/core';
import { faultPoints, faultyFileSystem } from '@dorajs/core/node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../src/node.js';
import { gpt2Config, writeCheckpoint } from './checkpoints.js';
import { baseDir, cpu, rejection, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await tmp.cleanup();
});

describe('saveModel fault injection', () => {
  it('each distinct counted call failing with ENOSPC, EIO, EACCES, EROFS: no output, no leftovers, an OutputError naming it', async () => {
    const backend = cpu();
    const { model, checkpoint } = await loadModel(baseDir('gpt2'), { backend });
    const counting = faultyFileSystem();
    await saveModel(model, join(tmp.dir, 'count'), { like: checkpoint, fs: counting.fs });
    const good = await readFile(join(tmp.dir, 'count', 'model.safetensors'));
    expect(counting.calls.length).toBeGreaterThan(8);
    const out = join(tmp.dir, 'out');
    let failures = 0;
    // Each fault point once, the codes taking turns (core's atomic tests sweep every code at every call).
    const codes = ['ENOSPC', 'EIO', 'EACCES', 'EROFS'];
    for (const [turn, failAt] of faultPoints(counting.calls).entries()) {
      const code = codes[turn % codes.length]!;
      {
        const faulty = faultyFileSystem({ failAt, code });
        const error = await saveModel(model, out, { like: checkpoint, fs: faulty.fs }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error === undefined) {
          // Only a best-effort folder fsync may fail without failing the save; the output is then complete.
          expect(faulty.calls[failAt - 1]).toMatch(/^sync /);
          expect(await readFile(join(out, 'model.safetensors'))).toEqual(good);
          await rm(out, { recursive: true });
          continue;
        }
        failures++;
        expect(error, `${code} at ${faulty.calls[failAt - 1]}`).toBeInstanceOf(OutputError);
        expect((error as OutputError).path.startsWith(out)).toBe(true);
        expect((error as Error).message).toContain(code);
        expect((error as Error).message).not.toMatch(/\.tmp-|\.new-|\.old-/);
        expect((await readdir(tmp.dir)).filter((e) => e !== 'count')).toEqual([]);
      }
    }
    expect(failures).toBeGreaterThan(8);
    model.dispose();
  });

  it('refuses the model folder itself, or a folder inside it, as the output — before writing anything', async () => {
    const { model, checkpoint } = await loadModel(baseDir('gpt2'), { backend: cpu() });
    const e1 = await rejection(saveModel(model, join(checkpoint.dir, 'merged'), { like: checkpoint }));
    expect(e1).toBeInstanceOf(FileError);
    expect(e1.message).toContain('lies inside the input folder');
    const e2 = await rejection(saveModel(model, tmp.dir.replace(/\/[^/]+$/, ''), { like: { ...checkpoint, dir: tmp.dir } }));
    expect(e2.name).toBe('OutputExistsError');
    model.dispose();
  });

  it('a huge declared extra tensor (a sparse 8 GiB file) blames the input file and key, not the output', async () => {
    const src = join(tmp.dir, 'src');
    await mkdir(src);
    await writeCheckpoint(src, gpt2Config());
    const path = join(src, 'model.safetensors');
    const bytes = await readFile(path);
    const length = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const end = Math.max(...Object.values(header).map((e) => e.data_offsets?.[1] ?? 0));
    const huge = 2 ** 33;
    const text = Buffer.from(JSON.stringify({ ...header, 'extra.huge': { dtype: 'U8', shape: [huge], data_offsets: [end, end + huge] } }));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(text.length));
    await writeFile(path, Buffer.concat([prefix, text, bytes.subarray(8 + length)]));
    const handle = await open(path, 'r+');
    await handle.truncate(8 + text.length + end + huge);
    await handle.close();

    const warnings: string[] = [];
    const { model, checkpoint } = await loadModel(src, { backend: cpu(), onWarning: (w) => warnings.push(w) });
    expect(warnings[0]).toContain("'extra.huge'");
    const out = join(tmp.dir, 'out');
    const error = await rejection(saveModel(model, out, { like: checkpoint }));
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error.message).toBe(`${path} [extra.huge]: cannot allocate 8589934592 bytes to read it`);
    expect((await readdir(tmp.dir)).sort()).toEqual(['src']);
    model.dispose();
  });
});
