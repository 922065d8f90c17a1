/**
 * The HTTP readers' `readInto`: a Range body is written straight into the caller's buffer (a BYOB read where
 * the body is a byte stream, read whole and copied where it is not), checked to be exactly as long as asked for; and
 * SafetensorsReader.readChunks reads every piece of every tensor into one reused buffer through it.
 */
import { describe, expect, it } from 'vitest';
import { FileError, SafetensorsError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/io/safetensors-reader.js';
import { serializeSafetensors } from '../../src/io/safetensors.js';
import type { ByteReader } from '../../src/io/source/file-source.js';
import { httpSource } from '../../src/io/source/http-source.js';

const FILE = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7 + 3) & 255);

/** A body of `bytes`: a byte stream (read BYOB into the buffer) or a plain stream of 100-byte chunks (read whole). */
function body(bytes: Uint8Array, kind: 'bytes' | 'plain'): ReadableStream<Uint8Array> {
  if (kind === 'bytes') return new Response(bytes).body!;
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.byteLength) return c.close();
      c.enqueue(bytes.slice(at, at + 100));
      at += 100;
    },
  });
}

/** A server of FILE honouring Range; `tamper` changes the body of ranged reads past the first. */
function fakeFetch(kind: 'bytes' | 'plain', tamper: (b: Uint8Array) => Uint8Array = (b) => b): typeof fetch {
  let requests = 0;
  return (async (_url: string, init?: { headers?: Record<string, string> }) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(init?.headers?.range ?? '');
    if (!m) return new Response(body(FILE, kind), { status: 200, headers: { 'content-length': String(FILE.byteLength) } });
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), FILE.byteLength - 1);
    const part = requests++ === 0 ? FILE.slice(start, end + 1) : tamper(FILE.slice(start, end + 1));
    return new Response(body(part, kind), {
      status: 206,
      headers: { 'content-range': `bytes ${start}-${end}/${FILE.byteLength}`, 'content-length': String(part.byteLength) },
    });
  }) as unknown as typeof fetch;
}

async function open(fetchFn: typeof fetch): Promise<ByteReader> {
  const reader = await httpSource('http://x/m/', { fetch: fetchFn, probeBytes: 64 }).open('f.bin');
  return reader!;
}

describe('readInto of a Range reader', () => {
  for (const kind of ['bytes', 'plain'] as const) {
    it(`${kind} body: the bytes land in the buffer's memory; the result is what to use`, async () => {
      const reader = await open(fakeFetch(kind));
      const target = new Uint8Array(1000);
      const got = await reader.readInto!(1234, target.subarray(10, 710));
      expect(got.byteLength).toBe(700);
      expect([...got]).toEqual([...FILE.subarray(1234, 1934)]);
      // The same memory: the 10 bytes before the view are still there, around the filled range.
      expect(got.byteOffset).toBe(10);
      expect(got.buffer.byteLength).toBe(1000);
      // A read inside the first request's bytes needs no request.
      const head = await reader.readInto!(3, new Uint8Array(20));
      expect([...head]).toEqual([...FILE.subarray(3, 23)]);
    });

    it(`${kind} body: a short body is a FileError, a longer one too`, async () => {
      const short = await open(fakeFetch(kind, (b) => b.subarray(0, b.byteLength - 1)));
      await expect(short.readInto!(1000, new Uint8Array(500))).rejects.toThrow(FileError);
      await expect(short.readInto!(1000, new Uint8Array(500))).rejects.toThrow(/truncated download: 499 of 500 bytes/);
      const long = await open(fakeFetch(kind, (b) => Uint8Array.from([...b, 1, 2])));
      await expect(long.readInto!(1000, new Uint8Array(500))).rejects.toThrow(
        kind === 'bytes' ? /truncated download: more than the 500 bytes asked for/ : /truncated download: 502 of 500 bytes/,
      );
      await expect(long.read(1000, 500)).rejects.toThrow(/truncated download: 502 of 500 bytes/);
    });
  }
});

describe('readChunks through readInto', () => {
  const a = Float32Array.from({ length: 300 }, (_, i) => i * 0.25 - 7);
  const b = Uint16Array.from({ length: 501 }, (_, i) => 0x3f00 + i);
  const file = serializeSafetensors(
    new Map([
      ['a', { dtype: 'F32', shape: [300], data: a }],
      ['b', { dtype: 'BF16', shape: [501], data: b }],
    ]),
  );

  const dataStart = 8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));

  /** A reader of `file` whose readInto records the memory it was given (and never transfers it). */
  function recording(buffers: ArrayBufferLike[]): ByteReader {
    return {
      name: 'm.safetensors',
      size: file.byteLength,
      read: async (offset, length) => file.slice(offset, offset + length),
      async readInto(offset, target) {
        buffers.push(target.buffer);
        target.set(file.subarray(offset, offset + target.byteLength));
        return target;
      },
      close: async () => {},
    };
  }

  it('every piece of every tensor is read into one buffer, and the pieces are right when used in turn', async () => {
    const buffers: ArrayBufferLike[] = [];
    const r = await SafetensorsReader.from(recording(buffers));
    const gotA: number[] = [];
    for await (const piece of r.readChunks('a', 256)) gotA.push(...(piece.data as Float32Array));
    const gotB: number[] = [];
    for await (const piece of r.readChunks('b', 100)) gotB.push(...(piece.data as Uint16Array));
    expect(gotA).toEqual([...a]);
    expect(gotB).toEqual([...b]);
    expect(buffers.length).toBe(Math.ceil(1200 / 256) + Math.ceil(1002 / 100));
    expect(new Set(buffers).size).toBe(1);
  });

  it('two tensors read at the same time get two buffers', async () => {
    const buffers: ArrayBufferLike[] = [];
    const r = await SafetensorsReader.from(recording(buffers));
    const ga = r.readChunks('a', 256);
    const gb = r.readChunks('b', 256);
    const pa = (await ga.next()).value!.data as Float32Array;
    const pb = (await gb.next()).value!.data as Uint16Array;
    expect([...pa]).toEqual([...a.subarray(0, 64)]);
    expect([...pb]).toEqual([...b.subarray(0, 128)]);
    expect(new Set(buffers).size).toBe(2);
    await ga.return(undefined);
    await gb.return(undefined);
  });

  it('over HTTP (BYOB reads transfer the buffer): the same values, and a short body is a SafetensorsError', async () => {
    const serve = (tamper?: (x: Uint8Array) => Uint8Array): typeof fetch =>
      (async (_url: string, init?: { headers?: Record<string, string> }) => {
        const m = /^bytes=(\d+)-(\d+)$/.exec(init?.headers?.range ?? '')!;
        const start = Number(m[1]);
        const end = Math.min(Number(m[2]), file.byteLength - 1);
        const whole = file.slice(start, end + 1);
        const part = tamper && start >= dataStart ? tamper(whole).slice() : whole;
        return new Response(part, {
          status: 206,
          headers: { 'content-range': `bytes ${start}-${end}/${file.byteLength}`, 'content-length': String(part.byteLength) },
        });
      }) as unknown as typeof fetch;
    const open = async (f: typeof fetch) =>
      SafetensorsReader.from((await httpSource('http://x/m/', { fetch: f, probeBytes: 8 }).open('model.safetensors'))!);
    const r = await open(serve());
    const gotA: number[] = [];
    for await (const piece of r.readChunks('a', 200)) gotA.push(...(piece.data as Float32Array));
    const gotB: number[] = [];
    for await (const piece of r.readChunks('b', 64)) gotB.push(...(piece.data as Uint16Array));
    expect(gotA).toEqual([...a]);
    expect(gotB).toEqual([...b]);
    const cut = await open(serve((x) => x.subarray(0, x.byteLength - 2)));
    const err = await (async () => {
      for await (const _ of cut.readChunks('a', 200));
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toMatch(/truncated download/);
  });
});
