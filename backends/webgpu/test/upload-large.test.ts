/**
 * beginUpload with pieces larger than one `writeBuffer` (1 MiB, `upload.ts`): a piece is written as several
 * writes at consecutive offsets. A 2.5 MiB bf16 weight (a slab range) and a 6 MiB one (a buffer of its own),
 * each in one big piece, a 3-byte-carrying odd piece and the rest, must read back bit for bit.
 *
 * `planUploads` (a loader announcing its tensors): the slabs are cut to measure, so the bytes allocated equal
 * the planned weights' 256-aligned bytes exactly (first-fit 8 MiB slabs took 8 MiB multiples: 32 MiB for these
 * two Llama-shaped layers' 24 MiB of ranges), and every tensor still reads back bit for bit; an upload off
 * the plan drops it and still works.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { setupGpu } from './helpers/gpu.js';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

const bitsFor = (n: number, seed: number) => Uint16Array.from({ length: n }, (_, i) => ((i + seed) * 2654435761) >>> 16);

describe.skipIf(!backend)(`webgpu beginUpload, large pieces${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('planUploads: slabs hold exactly the planned bytes, and the weights read back', async () => {
    await be.sync();
    const live = be.liveBuffers();
    const owned = be.stats().ownedBytes;
    // Two layers of the web-load Llama (h768, i2048, 4 kv heads), bf16, norms float32, then a 6 MiB weight
    // (a buffer of its own) and the final norm.
    const layer: [number[], 'bfloat16' | 'float32'][] = [
      [[768, 768], 'bfloat16'],
      [[256, 768], 'bfloat16'],
      [[256, 768], 'bfloat16'],
      [[768, 768], 'bfloat16'],
      [[2048, 768], 'bfloat16'],
      [[2048, 768], 'bfloat16'],
      [[768, 2048], 'bfloat16'],
      [[768], 'float32'],
      [[768], 'float32'],
    ];
    const plan = [...layer, ...layer, [[4096, 768], 'bfloat16'] as const, [[768], 'float32'] as const];
    be.planUploads(plan.map(([shape, dtype]) => ({ shape, dtype })));
    const loaded = [];
    for (const [i, [shape, dtype]] of plan.entries()) {
      const n = shape.reduce((a, b) => a * b, 1);
      const bits = dtype === 'bfloat16' ? bitsFor(n, i) : new Uint16Array(bitsFor(2 * n, i));
      const sink = be.beginUpload(shape, dtype);
      await sink.write(new Uint8Array(bits.buffer));
      loaded.push({ data: sink.finish(), shape, dtype, bits });
    }
    const bytes = plan.reduce(
      (sum, [shape, dtype]) => sum + Math.ceil((shape.reduce((a, b) => a * b, 1) * (dtype === 'float32' ? 4 : 2)) / 256) * 256,
      0,
    );
    expect(be.stats().ownedBytes - owned).toBe(bytes);
    for (const t of loaded) {
      const back = await be.download(t);
      const got = new Uint16Array(back.buffer, back.byteOffset, t.bits.length);
      expect(got.findIndex((v, i) => v !== t.bits[i])).toBe(-1);
    }
    // Off the plan (another shape first): dropped, first-fit slabs again, still correct.
    be.planUploads([{ shape: [768, 768], dtype: 'bfloat16' }]);
    const bits = bitsFor(256 * 768, 99);
    const sink = be.beginUpload([256, 768], 'bfloat16');
    await sink.write(new Uint8Array(bits.buffer));
    const off = sink.finish();
    const back = await be.download({ data: off, shape: [256, 768], dtype: 'bfloat16' });
    expect(new Uint16Array(back.buffer, back.byteOffset, bits.length).findIndex((v, i) => v !== bits[i])).toBe(-1);
    for (const t of [...loaded.map((l) => l.data), off]) be.release(t);
    await be.sync();
    expect(be.stats().ownedBytes).toBe(owned);
    expect(be.liveBuffers()).toBe(live);
  });

  it.each([
    [1280, 1024],
    [3072, 1024],
  ])('bf16 [%i, %i]', async (rows, cols) => {
    const live = be.liveBuffers();
    const n = rows * cols;
    const bits = Uint16Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 16);
    const bytes = new Uint8Array(bits.buffer);
    const sink = be.beginUpload([rows, cols], 'bfloat16');
    const big = bytes.byteLength - 2 * 1001;
    await sink.write(bytes.subarray(0, big));
    await sink.write(bytes.subarray(big, big + 2 * 999));
    await sink.write(bytes.subarray(big + 2 * 999));
    const t = sink.finish();
    const back = await be.download({ data: t, shape: [rows, cols], dtype: 'bfloat16' });
    const got = new Uint16Array(back.buffer, back.byteOffset, n);
    // The index of the first difference (-1: none), not a diff of millions of elements.
    expect(got.findIndex((v, i) => v !== bits[i])).toBe(-1);
    be.release(t);
    expect(be.liveBuffers()).toBe(live);
  });
});
