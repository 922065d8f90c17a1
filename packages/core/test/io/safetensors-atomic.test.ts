/**
 * A disk that fails in the middle of a save (ENOSPC on the second write): the previous file must survive
 * untouched and no temporary file may remain. The failure is injected by wrapping `open`.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { SafetensorsError, type HostTensor } from '../../src/index.js';
import { saveSafetensors } from '../../src/io/node.js';

const failure = vi.hoisted(() => ({ afterWrites: Infinity }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof fs.open = async (...args) => {
    const handle = await fs.open(...args);
    const write = handle.write.bind(handle) as (...a: unknown[]) => Promise<unknown>;
    let writes = 0;
    (handle as { write: unknown }).write = async (...a: unknown[]) => {
      if (writes++ >= failure.afterWrites) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return write(...a);
    };
    return handle;
  };
  return { ...fs, open };
});

let folder: string;
beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dorajs-atomic-'));
  failure.afterWrites = Infinity;
});
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const tensors = (value: number): Record<string, HostTensor> => ({
  a: { dtype: 'F32', shape: [64], data: new Float32Array(64).fill(value) },
  b: { dtype: 'I32', shape: [64], data: new Int32Array(64).fill(value) },
});

it('a failing write leaves the old file intact and no temporary file behind', async () => {
  const path = join(folder, 'model.safetensors');
  await saveSafetensors(path, tensors(1));
  const before = await readFile(path);

  failure.afterWrites = 1; // the header is written, the first tensor is not
  const error = await saveSafetensors(path, tensors(2)).then(
    () => undefined,
    (e: unknown) => e,
  );

  expect(error).toBeInstanceOf(SafetensorsError);
  expect((error as SafetensorsError).message).toBe(`${path}: could not write: ENOSPC: no space left on device, write`);
  expect(await readFile(path)).toEqual(before);
  expect(await readdir(folder)).toEqual(['model.safetensors']);
});

it('a failing first save leaves no file at all', async () => {
  const path = join(folder, 'fresh.safetensors');
  failure.afterWrites = 0;
  await expect(saveSafetensors(path, tensors(3))).rejects.toThrowError(SafetensorsError);
  expect(await readdir(folder)).toEqual([]);
});
