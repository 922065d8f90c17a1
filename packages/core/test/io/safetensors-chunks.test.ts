/**
 * SafetensorsReader.readChunks reads a tensor as consecutive ranges of at most maxBytes (whole elements), and
 * tensorWriter (core's composite, for a backend without beginUpload) checks every write before it lands.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { SafetensorsError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/io/safetensors-reader.js';
import { serializeSafetensors } from '../../src/io/safetensors.js';
import { bytesReader } from '../../src/io/source/file-source.js';
import type { ByteReader } from '../../src/io/source/file-source.js';
import { tensorWriter } from '../../src/tensor/writer.js';

function reader(reads: number[][]): Promise<SafetensorsReader> {
  const a = Float32Array.from({ length: 25 }, (_, i) => i * 0.5 - 3);
  const b = Uint16Array.from({ length: 9 }, (_, i) => 0x3f80 + i);
  const bytes = serializeSafetensors(
    new Map([
      ['a', { dtype: 'F32', shape: [5, 5], data: a }],
      ['b', { dtype: 'BF16', shape: [9], data: b }],
    ]),
  );
  const inner = bytesReader('m.safetensors', bytes);
  const counting: ByteReader = { ...inner, read: (o, n) => (reads.push([o, n]), inner.read(o, n)), close: () => inner.close() };
  return SafetensorsReader.from(counting);
}

describe('readChunks', () => {
  it('pieces of at most maxBytes, rounded down to whole elements, concatenate to the tensor', async () => {
    const reads: number[][] = [];
    const r = await reader(reads);
    const whole = (await r.read('a')).data as Float32Array;
    reads.length = 0;
    const pieces: number[] = [];
    const lengths: number[] = [];
    for await (const piece of r.readChunks('a', 30)) {
      expect(piece.dtype).toBe('F32');
      lengths.push(piece.data.length);
      pieces.push(...(piece.data as Float32Array));
    }
    expect(lengths).toEqual([7, 7, 7, 4]);
    expect(reads.map(([, n]) => n)).toEqual([28, 28, 28, 16]);
    expect(pieces).toEqual([...whole]);
    // A maxBytes below one element still reads one element at a time.
    const bf: number[] = [];
    for await (const piece of r.readChunks('b', 1)) bf.push(...(piece.data as Uint16Array));
    expect(bf).toEqual(Array.from({ length: 9 }, (_, i) => 0x3f80 + i));
  });

  it('names the file and key of a tensor it cannot find', async () => {
    const r = await reader([]);
    await expect(r.readChunks('nope').next()).rejects.toBeInstanceOf(SafetensorsError);
    await expect(r.readChunks('a', 0).next()).rejects.toBeInstanceOf(RangeError);
  });
});

describe("tensorWriter (core's composite)", () => {
  const uploads: unknown[][] = [];
  const backend = { upload: (...args: unknown[]) => (uploads.push(args), 'handle') } as unknown as Backend;

  it('assembles the pieces and uploads once', () => {
    const w = tensorWriter(backend, [2, 3], 'float32');
    const values = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const bytes = new Uint8Array(values.buffer);
    w.write(bytes.subarray(0, 8));
    expect(uploads).toHaveLength(0);
    w.write(bytes.subarray(8));
    w.finish();
    expect(uploads).toHaveLength(1);
    expect([...(uploads[0]![0] as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(uploads[0]!.slice(1)).toEqual([[2, 3], 'float32']);
  });

  it('refuses partial elements, overflow, an unfinished tensor and writes after finishing', () => {
    const w = tensorWriter(backend, [2], 'float32');
    expect(() => w.write(new Uint8Array(3))).toThrow(/3 more bytes after 0/);
    expect(() => w.write(new Uint8Array(12))).toThrow(/do not fit/);
    w.write(new Uint8Array(4));
    expect(() => w.finish()).toThrow(/4 of the 8 bytes/);
    w.write(new Uint8Array(4));
    w.finish();
    expect(() => w.write(new Uint8Array(4))).toThrow(/already finished/);
    expect(() => tensorWriter(backend, [2, -1], 'float32')).toThrow();
  });
});
