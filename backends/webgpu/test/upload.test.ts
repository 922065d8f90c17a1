/**
 * beginUpload: tensors written in pieces straight into their buffers (queue.writeBuffer at an offset). A 4 KiB
 * `maxBufferBytes` makes the larger tensors here split over several buffers, and a 1000-byte upload window
 * makes writes wait for the queue often. Every tensor must read back bit for bit, whatever the pieces
 * (single elements, odd byte counts that leave 1–3 bytes carried to the next piece, views at odd offsets of
 * reused buffers, pieces that straddle part boundaries); an aborted upload and every refused write leave no
 * buffer alive. Uploaded tensors of at most 4 MiB are ranges of shared 8 MiB slabs (`buffer-pool.ts`): kernels
 * reading them (several ranges of one slab in one dispatch) must give exactly what they give on uploaded
 * tensors, and a slab must go once its last range is released.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { BYTES_PER_ELEMENT, DTypeError, type DType, f32ToBf16, ShapeError, type TensorInfo, tensorWriter } from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { SLAB_BYTES } from '../src/buffer-pool.js';
import { setupGpu } from './helpers/gpu.js';

const { backend, skipReason } = await setupGpu({ maxBufferBytes: 4096, uploadWindowBytes: 1000 });
const be = backend!;
afterAll(() => backend?.dispose());

/** Deterministic bytes: every byte differs from its neighbours, so a piece landing one word off shows. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Writes `bytes` into a sink in pieces of the given element counts (cycled), each piece copied to an odd
 * offset of one scratch buffer that is scribbled over once the write returned.
 */
async function writeInPieces(sink: { write(b: Uint8Array): void | Promise<void> }, bytes: Uint8Array, width: number, pieces: number[]) {
  const scratch = new Uint8Array(bytes.byteLength + 8);
  let at = 0;
  for (let i = 0; at < bytes.byteLength; i++) {
    const n = Math.min(pieces[i % pieces.length]! * width, bytes.byteLength - at);
    scratch.set(bytes.subarray(at, at + n), 3);
    await sink.write(scratch.subarray(3, 3 + n));
    scratch.fill(0xee);
    at += n;
  }
}

async function bytesOf(data: GpuTensor, shape: readonly number[], dtype: DType): Promise<Uint8Array> {
  const values = await be.download({ data, shape, dtype });
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

const DTYPES: DType[] = ['float32', 'int32', 'bfloat16', 'float16', 'int8', 'uint8'];

describe.skipIf(!backend)(`webgpu beginUpload${skipReason ? ` (${skipReason})` : ''}`, () => {
  it.each(DTYPES)('%s: one buffer and split tensors, in uneven pieces, bit for bit', async (dtype) => {
    const width = BYTES_PER_ELEMENT[dtype];
    const live = be.liveBuffers();
    // [7, 9]: one buffer, 63 elements (an odd byte count for the narrow dtypes); [301, 16] and [5001]:
    // split (parts of 1024 elements: 4 KiB at 4 bytes per element), part ends inside the pieces written.
    for (const [shape, pieces] of [
      [
        [7, 9],
        [1, 3, 30, 29],
      ],
      [
        [301, 16],
        [1, 2, 3, 5, 777, 333, 1],
      ],
      [[301, 16], [4816]],
      [[5001], [1023, 1, 1025, 3]],
      [[1], [1]],
      [[0, 5], [1]],
    ] as [number[], number[]][]) {
      const size = shape.reduce((a, b) => a * b, 1);
      const bytes = pattern(size * width, size + width);
      const sink = be.beginUpload(shape, dtype);
      await writeInPieces(sink, bytes, width, pieces);
      const t = sink.finish();
      if (size > 1024) expect(be.buffersOf(t)).toBeGreaterThan(1);
      expect(await bytesOf(t, shape, dtype), `${dtype} [${shape}] in pieces ${pieces}`).toEqual(bytes);
      be.release(t);
    }
    expect(be.liveBuffers()).toBe(live);
  });

  it('core tensorWriter on this backend gives the same tensor as upload', async () => {
    const shape = [33, 41];
    const values = new Uint16Array(pattern(33 * 41 * 2, 7).buffer);
    const bytes = new Uint8Array(values.buffer);
    const writer = tensorWriter(be, shape, 'bfloat16');
    for (let at = 0; at < bytes.byteLength; at += 34) await writer.write(bytes.subarray(at, Math.min(at + 34, bytes.byteLength)));
    const t = writer.finish();
    expect(new Uint16Array((await t.data()).buffer)).toEqual(values);
    t.dispose();
  });

  it('waits for the queue every window of bytes, and a write that is not awaited still lands', async () => {
    const before = be.stats().uploadWaits;
    const shape = [2500];
    const bytes = pattern(2500 * 4, 99);
    const sink = be.beginUpload(shape, 'float32');
    const waits: unknown[] = [];
    for (let at = 0; at < bytes.byteLength; at += 400) waits.push(sink.write(bytes.subarray(at, at + 400)));
    const t = sink.finish();
    // 10000 bytes in 400-byte writes with a 1000-byte window: a wait on every third write or so.
    expect(waits.filter((w) => w instanceof Promise).length).toBeGreaterThanOrEqual(8);
    expect(be.stats().uploadWaits - before).toBeGreaterThanOrEqual(8);
    await Promise.all(waits);
    expect(await bytesOf(t, shape, 'float32')).toEqual(bytes);
    be.release(t);
  });

  it('abort frees the storage, one buffer or split', async () => {
    const live = be.liveBuffers();
    for (const shape of [
      [7, 9],
      [301, 16],
    ]) {
      const sink = be.beginUpload(shape, 'bfloat16');
      expect(be.liveBuffers()).toBeGreaterThan(live);
      await sink.write(pattern(2 * 30, 3));
      sink.abort();
      sink.abort();
      expect(be.liveBuffers()).toBe(live);
      expect(() => sink.write(new Uint8Array(2))).toThrow(ShapeError);
      expect(() => sink.finish()).toThrow(/after it was aborted/);
    }
  });

  it('refuses bad input with typed errors and leaks nothing', async () => {
    const live = be.liveBuffers();
    expect(() => be.beginUpload([2, 3], 'float64' as DType)).toThrow(DTypeError);
    expect(() => be.beginUpload([2, -1], 'float32')).toThrow(ShapeError);
    expect(() => be.beginUpload([2.5], 'float32')).toThrow(/invalid shape \[2\.5\]/);
    expect(be.liveBuffers()).toBe(live);

    const sink = be.beginUpload([2, 3], 'float16');
    await sink.write(new Uint8Array(4));
    expect(() => sink.write(new Uint8Array(10))).toThrow(/10 more bytes after 4 overflow float16 \[2, 3\] \(12 bytes\)/);
    expect(() => sink.finish()).toThrow(/4 of the 12 bytes of float16 \[2, 3\] were written/);
    await sink.write(new Uint8Array(8));
    const t = sink.finish();
    expect(() => sink.write(new Uint8Array(2))).toThrow(/write on float16 \[2, 3\] after it was finished/);
    expect(Array.from(new Uint16Array((await bytesOf(t, [2, 3], 'float16')).slice().buffer))).toEqual([0, 0, 0, 0, 0, 0]);
    be.release(t);
    expect(be.liveBuffers()).toBe(live);
  });

  it('kernels read slab ranges exactly as uploaded buffers, and a slab goes with its last range', async () => {
    await be.sync();
    const owned = be.stats().ownedBytes;
    const created = be.stats().created;
    const live = be.liveBuffers();
    const streamed = async (
      values: Float32Array | Uint16Array | Int32Array,
      shape: number[],
      dtype: DType,
    ): Promise<TensorInfo<GpuTensor>> => {
      const sink = be.beginUpload(shape, dtype);
      await writeInPieces(sink, new Uint8Array(values.buffer), values.BYTES_PER_ELEMENT, [7, 100]);
      return { data: sink.finish(), shape, dtype };
    };
    const rand = (n: number, seed: number) => Float32Array.from(pattern(n, seed), (b) => (b - 128) / 64);
    // x [3, 24] and W [20, 24] float32, a bf16 W [20, 24] and a bf16 table [30, 24]: ranges of one slab.
    const x = rand(72, 1);
    const w = rand(480, 2);
    const wb = Uint16Array.from(rand(480, 3), f32ToBf16);
    const table = Uint16Array.from(rand(720, 4), f32ToBf16);
    const ids = new Int32Array([29, 0, 7]);
    const sx = await streamed(x, [3, 24], 'float32');
    const sw = await streamed(w, [20, 24], 'float32');
    const swb = await streamed(wb, [20, 24], 'bfloat16');
    const stable = await streamed(table, [30, 24], 'bfloat16');
    const sids = await streamed(ids, [3], 'int32');
    expect(be.stats().created - created).toBe(1);
    const ux = { data: be.upload(x, [3, 24], 'float32'), shape: [3, 24], dtype: 'float32' } as const;
    const uw = { data: be.upload(w, [20, 24], 'float32'), shape: [20, 24], dtype: 'float32' } as const;
    const uwb = { data: be.upload(wb, [20, 24], 'bfloat16'), shape: [20, 24], dtype: 'bfloat16' } as const;
    const utable = { data: be.upload(table, [30, 24], 'bfloat16'), shape: [30, 24], dtype: 'bfloat16' } as const;
    const uids = { data: be.upload(ids, [3], 'int32'), shape: [3], dtype: 'int32' } as const;
    const out: GpuTensor[] = [];
    const read = async (data: GpuTensor, shape: number[]) => {
      out.push(data);
      return Array.from((await be.download({ data, shape, dtype: 'float32' })) as Float32Array);
    };
    const opts = { transposeA: false, transposeB: true };
    expect(await read(be.matmul(sx, sw, opts, [3, 20]), [3, 20])).toEqual(await read(be.matmul(ux, uw, opts, [3, 20]), [3, 20]));
    expect(await read(be.matmulNarrow(sx, swb, true, [3, 20]), [3, 20])).toEqual(
      await read(be.matmulNarrow(ux, uwb, true, [3, 20]), [3, 20]),
    );
    expect(await read(be.gatherNarrow(stable, sids), [3, 24])).toEqual(await read(be.gatherNarrow(utable, uids), [3, 24]));
    // x and W of one slab as both operands, and the same range twice.
    expect(await read(be.matmul(sx, sx, opts, [3, 3]), [3, 3])).toEqual(await read(be.matmul(ux, ux, opts, [3, 3]), [3, 3]));
    for (const t of [...out, ux.data, uw.data, uwb.data, utable.data, uids.data]) be.release(t);
    for (const t of [sx, sw, swb, stable]) be.release(t.data);
    await be.sync();
    expect(be.stats().ownedBytes - owned).toBeGreaterThanOrEqual(SLAB_BYTES);
    be.release(sids.data);
    await be.sync();
    expect(be.stats().ownedBytes - owned).toBeLessThan(SLAB_BYTES);
    expect(be.liveBuffers()).toBe(live);
  });
});
