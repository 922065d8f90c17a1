/**
 * loadModel reads each tensor in pieces of at most `chunkBytes` and writes them straight into backend storage
 * (the backend's `beginUpload`, or core's host composite where a backend lacks it): tensors many pieces long
 * load bit-exactly, in F32, widened BF16 and kept-wide BF16; a read that fails mid-tensor frees the storage.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import {
  type Backend,
  type ByteReader,
  bf16ToF32,
  f16ToF32,
  FileError,
  type FileSource,
  resolveSource,
  SafetensorsError,
  type Tensor,
} from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../src/node.js';
import { llamaConfig, writeCheckpoint } from './checkpoints.js';
import { rejection, useTempFolders } from './helpers.js';

const folder = useTempFolders();

/** Counts the reads and their largest length; fails the `failAt`-th tensor read when given. */
function watched(source: FileSource, failAt?: number): { source: FileSource; reads: () => number; largest: () => number } {
  let reads = 0;
  let largest = 0;
  const wrap = (r: ByteReader): ByteReader => ({
    name: r.name,
    size: r.size,
    read: async (offset, length) => {
      reads++;
      largest = Math.max(largest, length);
      if (failAt !== undefined && reads === failAt) throw new FileError('connection reset', r.name);
      return r.read(offset, length);
    },
    close: () => r.close(),
  });
  return {
    source: { ...source, describe: (f) => source.describe(f), open: async (f) => (await source.open(f).then((r) => r && wrap(r))) ?? null },
    reads: () => reads,
    largest: () => largest,
  };
}

/** Each parameter's values (a 2-byte-wide one widened from its bits) equal, bit for bit, what the file holds. */
async function expectExact(model: { stateDict(): Map<string, Tensor> }, values: Map<string, Float32Array>) {
  const params = model.stateDict();
  for (const [name, want] of values) {
    const p = params.get(name)!;
    const got =
      p.dtype === 'float32'
        ? await p.float32()
        : Float32Array.from((await p.data()) as Uint16Array, p.dtype === 'bfloat16' ? bf16ToF32 : f16ToF32);
    expect(
      Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)),
      name,
    ).toBe(true);
  }
}

describe('loadModel chunked reads', () => {
  for (const kernels of ['wasm', 'js'] as const) {
    for (const [dtype, keepWidth] of [
      ['F32', false],
      ['BF16', false],
      ['BF16', true],
      ['F16', true],
    ] as const) {
      it(`${kernels} kernels: ${dtype}${keepWidth ? ' kept wide' : ''} in 14-byte pieces loads bit-exactly`, async () => {
        const dir = await folder();
        const values = await writeCheckpoint(dir, llamaConfig(), { seed: 5, dtype });
        const backend = createCpuBackend({ kernels });
        const w = watched(await resolveSource(dir, {}));
        const { model } = await loadModel(w.source, { backend, keepWidth, chunkBytes: 14 });
        await expectExact(model, values);
        // Every piece is ≤ 14 bytes (past the header reads), so tensors took many reads.
        expect(w.reads()).toBeGreaterThan(values.size * 4);
        model.dispose();
        expect(backend.liveBuffers()).toBe(0);
      });
    }
  }

  it("a backend without beginUpload gets core's host composite, with the same values", async () => {
    const dir = await folder();
    const values = await writeCheckpoint(dir, llamaConfig(), { seed: 6, dtype: 'BF16' });
    const backend = createCpuBackend();
    let uploads = 0;
    const plain: Backend = Object.assign(Object.create(backend) as Backend, {
      beginUpload: undefined,
      upload: (...args: Parameters<Backend['upload']>) => {
        uploads++;
        return backend.upload(...args);
      },
    });
    const { model } = await loadModel(dir, { backend: plain, keepWidth: true, chunkBytes: 100 });
    await expectExact(model, values);
    expect(uploads).toBe(values.size);
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('a read failing in the middle of a tensor frees its storage and names the file and key', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { seed: 7 });
    const backend = createCpuBackend({ kernels: 'wasm' });
    const before = backend.memory().usedBytes;
    const w = watched(await resolveSource(dir, {}), 12);
    const error = await rejection(loadModel(w.source, { backend, chunkBytes: 64 }));
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error.message).toMatch(/model\.safetensors.*connection reset/);
    expect((error as SafetensorsError).key).toMatch(/weight$/);
    expect(backend.liveBuffers()).toBe(0);
    expect(backend.memory().usedBytes).toBe(before);
  });

  it('rejects a chunkBytes that is not a positive integer before reading anything', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig());
    for (const chunkBytes of [0, -8, 1.5, Number.NaN]) {
      const w = watched(await resolveSource(dir, {}));
      const error = await rejection(loadModel(w.source, { backend: createCpuBackend(), chunkBytes }));
      expect(error).toBeInstanceOf(RangeError);
      expect(error.message).toContain('chunkBytes');
      expect(w.reads()).toBe(0);
    }
  });
});
