/**
 * core's atomic writers under injected faults (each counted write/fsync/rename/mkdir/open failing in turn
 * with ENOSPC, EIO, EACCES and EROFS: tests run as root, so permissions are injected, not chmod'ed), the
 * recovery of what killed runs leave behind, and output-path validation.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileError, type HostTensor, OutputError, SafetensorsError } from '../../src/index.js';
import {
  checkOutputPath,
  faultyFileSystem,
  openSafetensors,
  readRegularText,
  recoverOutput,
  replaceFolder,
  saveSafetensors,
} from '../../src/io/node.js';

const CODES = ['ENOSPC', 'EIO', 'EACCES', 'EROFS'] as const;

let folder: string;
beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dorajs-atomic-'));
});
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const tensors = (value: number): Record<string, HostTensor> => ({
  a: { dtype: 'F32', shape: [64], data: new Float32Array(64).fill(value) },
  b: { dtype: 'I32', shape: [64], data: new Int32Array(64).fill(value) },
});

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      out[path.slice(dir.length)] = (await readFile(path)).toString('base64');
    }
  }
  return out;
}

describe('saveSafetensors under injected faults', () => {
  it('every counted call failing with each code leaves the old file intact, no temporary, and an OutputError naming the path', async () => {
    const path = join(folder, 'model.safetensors');
    await saveSafetensors(path, tensors(1));
    const before = await readFile(path);
    const counting = faultyFileSystem();
    await saveSafetensors(join(folder, 'count.safetensors'), tensors(2), undefined, { fs: counting.fs });
    await rm(join(folder, 'count.safetensors'));
    expect(counting.calls.length).toBeGreaterThanOrEqual(5); // open, 3 writes, fsync, rename, (folder fsync)
    for (const code of CODES) {
      for (let failAt = 1; failAt <= counting.calls.length; failAt++) {
        const faulty = faultyFileSystem({ failAt, code });
        const error = await saveSafetensors(path, tensors(2), undefined, { fs: faulty.fs }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(await readdir(folder)).toEqual(['model.safetensors']);
        if (error === undefined) {
          // Only the best-effort folder fsync after the rename may fail without failing the save.
          expect(faulty.calls[failAt - 1]).toMatch(/^sync /);
          await saveSafetensors(path, tensors(1));
          continue;
        }
        expect(error).toBeInstanceOf(OutputError);
        expect((error as OutputError).path).toBe(path);
        expect((error as Error).message).toContain(code);
        expect((error as Error).message).not.toContain('.tmp-');
        expect(await readFile(path)).toEqual(before);
      }
    }
  });
});

describe('replaceFolder', () => {
  const fill = (value: string) => async (dir: string) => {
    await writeFile(join(dir, 'a.txt'), `a${value}`);
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'b.txt'), `b${value}`);
  };

  it('replaces a folder as a whole; every injected fault leaves the old folder exactly and nothing beside it', async () => {
    const out = join(folder, 'out');
    await replaceFolder(out, fill('1'));
    const before = await snapshot(out);
    const counting = faultyFileSystem();
    await replaceFolder(join(folder, 'count'), fill('2'), { fs: counting.fs });
    await rm(join(folder, 'count'), { recursive: true });
    for (const code of CODES) {
      for (let failAt = 1; failAt <= counting.calls.length; failAt++) {
        const faulty = faultyFileSystem({ failAt, code });
        const error = await replaceFolder(out, fill('2'), { fs: faulty.fs }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(await readdir(folder)).toEqual(['out']);
        if (error === undefined) {
          // Only the best-effort fsync of a folder (the new one, or the parent) may fail without failing the write.
          expect(faulty.calls[failAt - 1]).toMatch(/^sync .*(\.out\.tmp-[\d-]+[0-9a-f]+|dorajs-atomic-\w+)$/);
          await replaceFolder(out, fill('1'));
          continue;
        }
        expect(error).toBeInstanceOf(OutputError);
        expect((error as OutputError).path.startsWith(out)).toBe(true);
        expect((error as Error).message).not.toContain('.tmp-');
        expect(await snapshot(out)).toEqual(before);
      }
    }
  });

  it('keepOthers carries over entries the new folder lacks', async () => {
    const out = join(folder, 'out');
    await mkdir(out);
    await writeFile(join(out, 'README.md'), 'mine');
    await writeFile(join(out, 'a.txt'), 'old');
    await replaceFolder(out, fill('2'), { keepOthers: true });
    expect(await readFile(join(out, 'README.md'), 'utf8')).toBe('mine');
    expect(await readFile(join(out, 'a.txt'), 'utf8')).toBe('a2');
  });

  it('an error from fill that is not I/O keeps its type', async () => {
    const out = join(folder, 'out');
    await expect(
      replaceFolder(out, async () => {
        throw new SafetensorsError('bad', 'x');
      }),
    ).rejects.toThrowError(SafetensorsError);
    expect(await readdir(folder)).toEqual([]);
  });
});

describe('recoverOutput: what a killed run leaves, the next run restores or removes', () => {
  const dead = 2 ** 22 + 12345; // above Linux's default pid_max: never a live process
  it('removes an incomplete temporary folder and a completed-but-unused one, keeping the output', async () => {
    const out = join(folder, 'out');
    await mkdir(out);
    await mkdir(join(folder, `.out.tmp-${dead}-aa`));
    await mkdir(join(folder, `.out.new-${dead}-bb`));
    const lines = await recoverOutput(out);
    expect(lines).toHaveLength(2);
    expect(await readdir(folder)).toEqual(['out']);
  });

  it('killed between the two renames of a swap: the complete new folder is moved into place', async () => {
    const out = join(folder, 'out');
    await mkdir(join(folder, `.out.new-${dead}-cc`));
    await writeFile(join(folder, `.out.new-${dead}-cc`, 'v'), 'new');
    await mkdir(join(folder, `.out.old-${dead}-cc`));
    await replaceFolder(join(folder, 'other'), async () => {}); // another output's write leaves 'out' alone
    expect((await readdir(folder)).sort()).toEqual([`.out.new-${dead}-cc`, `.out.old-${dead}-cc`, 'other']);
    const reports: string[] = [];
    await recoverOutput(out, { report: (l) => reports.push(l) });
    expect(await readFile(join(out, 'v'), 'utf8')).toBe('new');
    expect((await readdir(folder)).sort()).toEqual(['other', 'out']);
    expect(reports.join('\n')).toMatch(/restored .*out/);
  });

  it('a moved-aside old folder with no new one is put back; a stale temporary file is removed', async () => {
    const out = join(folder, 'out');
    await mkdir(join(folder, `.out.old-${dead}-dd`));
    await writeFile(join(folder, `.w.safetensors.tmp-${dead}-ee`), 'partial');
    await recoverOutput(out);
    await recoverOutput(join(folder, 'w.safetensors'));
    expect(await readdir(folder)).toEqual(['out']);
  });

  it('leaves temporaries of a live writer alone', async () => {
    await mkdir(join(folder, `.out.tmp-1-ff`)); // pid 1 is always alive
    await recoverOutput(join(folder, 'out'));
    expect(await readdir(folder)).toEqual(['.out.tmp-1-ff']);
  });
});

describe('checkOutputPath', () => {
  it('refuses, with a FileError naming the path: a folder as a file, a file as a folder, under a file, an input, inside or around an input', async () => {
    const file = join(folder, 'f.txt');
    await writeFile(file, 'x');
    const input = join(folder, 'model');
    await mkdir(input);
    const cases: [string, Parameters<typeof checkOutputPath>[1], string][] = [
      [folder, { kind: 'file' }, 'is a folder'],
      [file, { kind: 'folder' }, 'exists and is not a folder'],
      [join(file, 'out'), { kind: 'folder' }, 'is not a folder'],
      [join(file, 'deeper', 'out'), { kind: 'file' }, 'is not a folder'],
      [file, { kind: 'file', inputs: [file] }, 'is one of the inputs'],
      [join(input, 'model.safetensors'), { kind: 'file', inputs: [input] }, 'inside the input folder'],
      [folder, { kind: 'folder', inputs: [input] }, 'contains the input'],
      [input, { kind: 'folder', mustBeEmpty: true }, ''],
    ];
    await writeFile(join(input, 'config.json'), '{}');
    cases.push([input, { kind: 'folder', mustBeEmpty: true }, 'not empty']);
    cases.splice(cases.length - 2, 1);
    for (const [path, check, says] of cases) {
      const error = await checkOutputPath(path, check).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `${path} ${JSON.stringify(check)}`).toBeInstanceOf(FileError);
      expect((error as FileError).path).toBe(path);
      expect((error as Error).message).toContain(says);
    }
  });

  it('refuses a folder that is not writable (EACCES and EROFS injected)', async () => {
    for (const code of ['EACCES', 'EROFS']) {
      const fs = { ...faultyFileSystem().fs, access: async () => Promise.reject(Object.assign(new Error(code), { code })) };
      await expect(checkOutputPath(join(folder, 'new', 'out'), { kind: 'folder', fs })).rejects.toThrowError(
        `folder ${folder} is not writable (${code})`,
      );
    }
  });

  it('accepts a new path, an existing file to replace, and a symlinked alias is still an input', async () => {
    await checkOutputPath(join(folder, 'a', 'b'), { kind: 'folder' });
    await writeFile(join(folder, 'out.safetensors'), 'x');
    await checkOutputPath(join(folder, 'out.safetensors'), { kind: 'file', inputs: [join(folder, 'ids.json')] });
    execFileSync('ln', ['-s', join(folder, 'out.safetensors'), join(folder, 'alias')]);
    await expect(checkOutputPath(join(folder, 'alias'), { kind: 'file', inputs: [join(folder, 'out.safetensors')] })).rejects.toThrowError(
      'is one of the inputs',
    );
  });
});

describe('inputs are regular files only', () => {
  it('a FIFO is refused at once (never waited on), as weights and as text', async () => {
    const fifo = join(folder, 'pipe');
    execFileSync('mkfifo', [fifo]);
    await expect(openSafetensors(fifo)).rejects.toThrowError(`${fifo}: not a regular file (a named pipe)`);
    await expect(readRegularText(fifo, 1000)).rejects.toThrowError(`${fifo}: not a regular file (a named pipe)`);
  });

  it('a file over the size limit is refused before reading', async () => {
    await writeFile(join(folder, 'big.json'), 'x'.repeat(2000));
    await expect(readRegularText(join(folder, 'big.json'), 1000)).rejects.toThrowError('over the 1000-byte limit');
  });
});
