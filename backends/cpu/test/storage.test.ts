import {
  BackendError,
  ConfigError,
  checkFits,
  DisposedTensorError,
  DTypeError,
  OutOfMemoryError,
  registeredBackends,
  resolveBackend,
  ShapeError,
} from '@dorajs/core';
import { describe, expect, it, vi } from 'vitest';
import { CpuBackend, createCpuBackend } from '../src/index.js';
import { WasmRuntime } from '../src/wasm/runtime.js';
import { down, up } from './helpers.js';

describe('cpu backend storage', () => {
  it('counts live handles and returns to zero after releases', () => {
    const b = createCpuBackend();
    const x = up(b, [1, 2, 3], [3]);
    const y = b.unary('exp', x);
    expect(b.liveBuffers()).toBe(2);
    b.release(x.data);
    b.release(y);
    expect(b.liveBuffers()).toBe(0);
  });

  it('rejects a second release and any use of a released handle', () => {
    const b = createCpuBackend();
    const x = up(b, [1, 2], [2]);
    b.release(x.data);
    expect(() => b.release(x.data)).toThrow(DisposedTensorError);
    expect(() => b.unary('neg', x)).toThrow(DisposedTensorError);
    expect(b.liveBuffers()).toBe(0);
  });

  it('rejects handles of another instance, and foreign objects', () => {
    const a = createCpuBackend();
    const b = createCpuBackend();
    const x = up(a, [1], [1]);
    expect(() => b.release(x.data)).toThrow(/another cpu backend/);
    expect(() => b.unary('neg', x)).toThrow(BackendError);
    expect(() => b.release({} as never)).toThrow(BackendError);
  });

  it('copies on upload and on download', async () => {
    const b = createCpuBackend();
    const host = Float32Array.from([1, 2]);
    const x = b.upload(host, [2], 'float32');
    host[0] = 99;
    const d1 = await b.download({ data: x, shape: [2], dtype: 'float32' });
    (d1 as Float32Array)[1] = 42;
    expect(Array.from(await b.download({ data: x, shape: [2], dtype: 'float32' }))).toEqual([1, 2]);
  });

  it('checks uploads: array type against dtype, length against shape', () => {
    const b = createCpuBackend();
    expect(() => b.upload(new Int32Array(2), [2], 'float32')).toThrow(DTypeError);
    expect(() => b.upload(new Float32Array(3), [2, 2], 'float32')).toThrow(ShapeError);
    expect(() => b.upload(new Float32Array(0), [-1], 'float32')).toThrow(ShapeError);
    expect(b.liveBuffers()).toBe(0);
  });

  it('checks that a tensor info matches its handle', () => {
    const b = createCpuBackend();
    const x = up(b, [1, 2, 3, 4], [4]);
    expect(() => b.unary('neg', { ...x, shape: [5] })).toThrow(ShapeError);
    expect(() => b.unary('neg', { ...x, dtype: 'int32' })).toThrow(DTypeError);
  });

  it('stores narrow dtypes as raw bits and fills them encoded', async () => {
    const b = createCpuBackend();
    const h = b.fill([2], 1.5, 'bfloat16');
    expect(Array.from(await b.download({ data: h, shape: [2], dtype: 'bfloat16' }))).toEqual([0x3fc0, 0x3fc0]);
    const f = b.fill([1], -2, 'float16');
    expect(Array.from(await b.download({ data: f, shape: [1], dtype: 'float16' }))).toEqual([0xc000]);
    expect(() => b.unary('exp', { data: h, shape: [2], dtype: 'bfloat16' })).toThrow(/cast it first/);
  });

  it('refuses work after dispose', () => {
    const b = createCpuBackend();
    const x = up(b, [1], [1]);
    b.dispose();
    expect(() => b.unary('neg', x)).toThrow(/disposed/);
    expect(() => b.fill([1], 0, 'float32')).toThrow(BackendError);
  });

  it('validates the threads option', () => {
    expect(createCpuBackend({ threads: 1 }).threads).toBe(1);
    expect(() => createCpuBackend({ threads: 0 })).toThrow(ConfigError);
    expect(() => createCpuBackend({ threads: 1.5 })).toThrow(ConfigError);
    // Truthful: the typed-array kernels run on the calling thread whatever is asked.
    const js = createCpuBackend({ kernels: 'js', threads: 4 });
    expect([js.threads, js.maxThreads]).toEqual([1, 4]);
    const wasm = createCpuBackend({ kernels: 'wasm', threads: 3 });
    expect([wasm.threads, wasm.maxThreads]).toEqual([3, 3]);
    wasm.dispose();
  });

  it('registers as "cpu" through the register entry', async () => {
    await import('../src/register.js');
    expect(registeredBackends()).toContain('cpu');
    const { backend, reason } = await resolveBackend('cpu');
    expect(backend).toBeInstanceOf(CpuBackend);
    expect(reason).toBe('requested: cpu');
  });
});

describe('wasm heap storage', () => {
  it('keeps tensors in the wasm heap and gives their blocks back on release', async () => {
    const b = createCpuBackend({ kernels: 'wasm' });
    const runtime = WasmRuntime.get()!;
    const before = runtime.heap.allocatedBytes;
    const x = up(b, [1, 2, 3], [3]);
    expect(x.data.ptr).toBeGreaterThan(0);
    expect(x.data.values.buffer).toBe(runtime.buffer);
    const y = b.unary('neg', x);
    expect(runtime.heap.allocatedBytes).toBeGreaterThan(before);
    expect(await down(b, y, [3])).toEqual([-1, -2, -3]);
    b.release(x.data);
    b.release(y);
    expect(runtime.heap.allocatedBytes).toBe(before);
  });

  it('a tensor the heap cannot hold is refused with a typed error (never an array outside the heap)', async () => {
    const b = createCpuBackend({ kernels: 'wasm' });
    const heap = WasmRuntime.get()!.heap;
    const inHeap = up(b, [1, 2, 3, 4], [2, 2]);
    const live = b.liveBuffers();
    const spy = vi.spyOn(heap, 'alloc').mockReturnValue(null);
    try {
      const refused = (() => {
        try {
          b.upload(new Float32Array(6), [2, 3], 'float32');
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(refused).toBeInstanceOf(OutOfMemoryError);
      const err = refused as OutOfMemoryError;
      expect(err.tensor).toBe('an uploaded float32 tensor [2, 3]');
      expect(err.bytes).toBe(24);
      expect(err.limit).toBe(heap.maxBytes);
      expect(err.message).toMatch(/cpu: the wasm heap cannot hold an uploaded float32 tensor \[2, 3\] \(24 bytes\).*4294967296 bytes/);
      // A kernel's result too, and nothing is left allocated or counted.
      expect(() => b.unary('neg', inHeap)).toThrow(/cannot hold a float32 result of 4 elements \(16 bytes\)/);
      expect(b.liveBuffers()).toBe(live);
    } finally {
      spy.mockRestore();
    }
    b.release(inHeap.data);
    expect(b.liveBuffers()).toBe(0);
  });

  it('checkFits refuses a model before anything is uploaded, naming the tensor, the bytes and the limit', () => {
    const b = createCpuBackend({ kernels: 'wasm' });
    const { usedBytes, limitBytes } = b.memory();
    const room = limitBytes - usedBytes;
    expect(() =>
      checkFits(b, [
        { name: 'a', bytes: room / 2 },
        { name: 'b', bytes: room / 4 },
      ]),
    ).not.toThrow();
    expect(() =>
      checkFits(b, [
        { name: 'a', bytes: room / 2 },
        { name: 'model.embed_tokens.weight', bytes: room / 2 + 64 },
      ]),
    ).toThrow(/cannot hold model\.embed_tokens\.weight \(\d+ bytes\).*exceed its limit of 4294967296 bytes/);
    expect(() => checkFits(b, [{ name: 'a', bytes: room / 2 }], room / 2 + 64, 'a KV cache of 2048 tokens')).toThrow(
      /cannot hold a KV cache of 2048 tokens/,
    );
    // The typed-array kernels have no fixed bound.
    expect(() => checkFits(createCpuBackend({ kernels: 'js' }), [{ name: 'x', bytes: 2 ** 40 }])).not.toThrow();
  });

  it('empty tensors and the js kernels use ordinary arrays', () => {
    const w = createCpuBackend({ kernels: 'wasm' });
    expect(w.upload(new Float32Array(0), [0, 3], 'float32').ptr).toBe(0);
    const j = createCpuBackend({ kernels: 'js' });
    const h = j.upload(new Float32Array(2), [2], 'float32');
    expect(h.ptr).toBe(0);
    expect(h.values.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it('rejects unknown kernel choices and thread counts', () => {
    expect(() => createCpuBackend({ kernels: 'gpu' as never })).toThrow(ConfigError);
    expect(() => createCpuBackend({ threads: 0 })).toThrow(ConfigError);
    expect(() => createCpuBackend({ threads: 1.5 })).toThrow(ConfigError);
  });
});
