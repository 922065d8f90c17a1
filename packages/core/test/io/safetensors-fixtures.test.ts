import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors, toFloat32, toInt32 } from '../../src/index.js';
import { openSafetensors, readSafetensors } from '../../src/io/node.js';
import { allFixtureFiles, PEFT_FIXTURES } from './fixture-paths.js';

const fixture = (path: string) => join(PEFT_FIXTURES, path);

describe('PEFT fixture files', () => {
  it('reads known values from linear/tensors.safetensors', async () => {
    const path = fixture('linear/tensors.safetensors');
    const { tensors, metadata } = await readSafetensors(path);
    expect(metadata).toEqual({});
    const x = tensors.get('input.x')!;
    expect(x.dtype).toBe('F32');
    expect(x.shape).toEqual([5, 16]);
    const xs = toFloat32(x, { file: path, key: 'input.x' });
    expect(xs[0]).toBe(Math.fround(1.0257115364074707));
    expect(xs[1]).toBe(Math.fround(-1.2771825790405273));
    expect(xs[79]).toBe(Math.fround(0.08752501755952835));
    const base = toFloat32(tensors.get('out.base')!, { file: path, key: 'out.base' });
    expect(tensors.get('out.base')!.shape).toEqual([5, 8]);
    expect(base[2]).toBe(Math.fround(0.27999961376190186));
    expect(base[39]).toBe(Math.fround(-0.377242773771286));
  });

  it('reads the adapter file with its metadata and PEFT key names', async () => {
    const { tensors, metadata } = await readSafetensors(fixture('linear/adapter/adapter_model.safetensors'));
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.get('base_model.model.lin1.lora_A.weight')!.shape).toEqual([4, 16]);
    expect(tensors.get('base_model.model.lin1.lora_B.weight')!.shape).toEqual([32, 4]);
    expect(tensors.get('base_model.model.lin2.lora_magnitude_vector')!.shape).toEqual([8]);
  });

  it('narrows int64 ids from embedding/tensors.safetensors', async () => {
    const file = await openSafetensors(fixture('embedding/tensors.safetensors'));
    try {
      expect(file.entry('input.ids')).toMatchObject({ dtype: 'I64', shape: [2, 7] });
      expect([...(await file.readInt32('input.ids'))]).toEqual([32, 9, 38, 38, 28, 10, 24, 37, 30, 20, 18, 0, 18, 7]);
    } finally {
      await file.close();
    }
  });

  it('parses a Node Buffer of the whole file into tensors that do not alias it', async () => {
    const path = fixture('linear/base/model.safetensors');
    const buffer = await readFile(path);
    const { tensors } = parseSafetensors(buffer, path);
    const bias = toFloat32(tensors.get('lin1.bias')!, { file: path, key: 'lin1.bias' });
    expect([...bias.subarray(0, 2)]).toEqual([Math.fround(0.027732402086257935), Math.fround(-0.03946825861930847)]);
    buffer.fill(0);
    expect(bias[0]).toBe(Math.fround(0.027732402086257935));
  });

  // The strongest check of the writer: our layout reproduces the Python library's bytes exactly.
  it.each(allFixtureFiles())('re-serialises %s byte for byte', async (path) => {
    const bytes = new Uint8Array(await readFile(fixture(path)));
    const { tensors, metadata } = parseSafetensors(bytes, path);
    const hasMetadata = Object.keys(metadata).length > 0;
    const written = serializeSafetensors(tensors, hasMetadata ? metadata : undefined);
    expect(written.byteLength).toBe(bytes.byteLength);
    expect(firstDifference(written, bytes)).toBe(-1);
  });

  it('finds every fixture file', () => {
    expect(allFixtureFiles().length).toBeGreaterThanOrEqual(30);
  });
});

/** Index of the first differing byte, or -1 (toEqual on megabytes is slow). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : Math.min(a.length, b.length);
}

describe('toInt32 / toFloat32 refuse the wrong kind of tensor', () => {
  it('names the key when floats are read as ids', async () => {
    const path = fixture('linear/tensors.safetensors');
    const file = await openSafetensors(path);
    try {
      await expect(file.readInt32('input.x')).rejects.toThrowError(`${path} [input.x]: expected an integer tensor`);
    } finally {
      await file.close();
    }
  });

  it('names the key when ids are read as floats', () => {
    const ids = { dtype: 'I64', shape: [1], data: new BigInt64Array([1n]) } as const;
    expect(() => toFloat32(ids, { file: 'f', key: 'input.ids' })).toThrowError('f [input.ids]: expected a float tensor');
    expect([...toInt32(ids, { file: 'f', key: 'input.ids' })]).toEqual([1]);
  });
});
