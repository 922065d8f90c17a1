import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OutputError, SafetensorsError, serializeSafetensors, type HostTensor } from '../../src/index.js';
import { openSafetensors, readSafetensors, saveSafetensors } from '../../src/io/node.js';

let folder: string;
beforeEach(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dorajs-io-'));
});
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const weights: Record<string, HostTensor> = {
  'lin.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  'lin.bias': { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
  ids: { dtype: 'I64', shape: [3], data: new BigInt64Array([5n, -1n, 7n]) },
};

describe('saveSafetensors', () => {
  it('writes what serializeSafetensors produces, and reads back', async () => {
    const path = join(folder, 'model.safetensors');
    await saveSafetensors(path, weights, { format: 'pt' });
    expect(new Uint8Array(await readFile(path))).toEqual(serializeSafetensors(weights, { format: 'pt' }));
    const back = await readSafetensors(path);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect([...back.tensors.get('lin.weight')!.data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await readdir(folder)).toEqual(['model.safetensors']);
  });

  it('replaces an existing file', async () => {
    const path = join(folder, 'model.safetensors');
    await writeFile(path, 'old contents');
    await saveSafetensors(path, weights);
    expect((await readSafetensors(path)).tensors.size).toBe(3);
  });

  it('leaves no partial or temporary file when the final rename fails', async () => {
    const path = join(folder, 'taken');
    await mkdir(path); // renaming a file onto a directory fails after the data was written
    const error = await saveSafetensors(path, weights).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutputError);
    expect((error as OutputError).path).toBe(path);
    expect(await readdir(folder)).toEqual(['taken']);
    expect(await readdir(path)).toEqual([]);
  });

  it('validates before touching the disk and names the key', async () => {
    const path = join(folder, 'bad.safetensors');
    const bad = { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } } as Record<string, HostTensor>;
    await expect(saveSafetensors(path, bad)).rejects.toThrowError(`${path} [w]: shape [3] has 3 elements but data has 2`);
    expect(await readdir(folder)).toEqual([]);
  });
});

describe('openSafetensors (lazy reads)', () => {
  it('lists keys and entries without reading data, then reads single tensors', async () => {
    const path = join(folder, 'model.safetensors');
    await saveSafetensors(path, weights);
    const file = await openSafetensors(path);
    try {
      expect(file.keys).toEqual(['ids', 'lin.weight', 'lin.bias']);
      expect(file.has('ids')).toBe(true);
      expect(file.entry('lin.bias')).toMatchObject({ dtype: 'BF16', shape: [2] });
      expect([...(await file.readFloat32('lin.bias'))]).toEqual([1, -2]);
      expect([...(await file.readInt32('ids'))]).toEqual([5, -1, 7]);
      const w = await file.read('lin.weight');
      expect(w.data.byteOffset).toBe(0); // read straight into its own buffer, not a view of a bigger one
      expect(w.data.buffer.byteLength).toBe(24);
    } finally {
      await file.close();
    }
  });

  it('names a missing key', async () => {
    const path = join(folder, 'model.safetensors');
    await saveSafetensors(path, weights);
    const file = await openSafetensors(path);
    try {
      await expect(file.read('nope')).rejects.toThrowError(`${path} [nope]: no such tensor in the file`);
    } finally {
      await file.close();
    }
  });

  it('names a missing file', async () => {
    const path = join(folder, 'absent.safetensors');
    await expect(openSafetensors(path)).rejects.toThrowError(SafetensorsError);
    await expect(openSafetensors(path)).rejects.toThrowError(`${path}: cannot open`);
  });

  it('names a folder given as a file, and a read after close', async () => {
    await expect(openSafetensors(folder)).rejects.toThrowError(`${folder}: not a regular file`);
    const path = join(folder, 'model.safetensors');
    await saveSafetensors(path, weights);
    const file = await openSafetensors(path);
    await file.close();
    await expect(file.read('ids')).rejects.toThrowError(`${path} [ids]: cannot read`);
  });

  it('still reads the other keys of a file holding a dtype it cannot decode', async () => {
    const text = '{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"u":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}}';
    const header = new TextEncoder().encode(text);
    const bytes = new Uint8Array(8 + header.length + 10);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
    bytes.set(header, 8);
    bytes.set([3, 4], 8 + header.length + 8);
    const path = join(folder, 'mixed.safetensors');
    await writeFile(path, bytes);
    const file = await openSafetensors(path);
    try {
      expect([...(await file.read('u')).data]).toEqual([3, 4]);
      await expect(file.read('d')).rejects.toThrowError(`${path} [d]: dtype F64 is not supported`);
    } finally {
      await file.close();
    }
  });
});
