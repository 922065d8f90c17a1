/**
 * beginUpload with pieces larger than one `writeBuffer` (1 MiB, `upload.ts`): a piece is written as several
 * writes at consecutive offsets. A 2.5 MiB bf16 weight (a slab range) and a 6 MiB one (a buffer of its own),
 * each in one big piece, a 3-byte-carrying odd piece and the rest, must read back bit for bit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { setupGpu } from './helpers/gpu.js';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

describe.skipIf(!backend)(`webgpu beginUpload, large pieces${skipReason ? ` (${skipReason})` : ''}`, () => {
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
