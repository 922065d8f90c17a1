/**
 * `await loadCpuBackend(options)` (the kernel emitter as a lazy import) builds the same backend as
 * `createCpuBackend(options)`: same kernels, FMA, threads and description, the same results bit for bit, the
 * same errors. `./register` resolves 'cpu' through it. A CpuBackend constructed directly reuses an engine an
 * earlier backend was given, and without one builds only the typed-array kernels.
 */
import { ConfigError, resolveBackend } from '@dorajs/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type CpuBackend, type CpuBackendOptions, createCpuBackend, loadCpuBackend } from '../src/index.js';
import { seeded } from './helpers.js';

const made: CpuBackend[] = [];
afterAll(() => {
  for (const b of made) b.dispose();
});
const keep = (b: CpuBackend) => (made.push(b), b);

/** A matmul, a fused weight norm and an elementwise op, read back. */
async function compute(b: CpuBackend): Promise<Float32Array[]> {
  let seed = 7;
  const up = (shape: number[]) => {
    const v = seeded(shape[0]! * shape[1]!, seed++);
    return { data: b.upload(v, shape, 'float32'), shape, dtype: 'float32' as const };
  };
  const x = up([37, 129]);
  const w = up([129, 70]);
  const y = { data: b.matmul(x, w, {}, [37, 70]), shape: [37, 70], dtype: 'float32' as const };
  const e = { data: b.unary('gelu', y), shape: [37, 70], dtype: 'float32' as const };
  return [(await b.download(y)) as Float32Array, (await b.download(e)) as Float32Array];
}

const CASES: CpuBackendOptions[] = [{}, { threads: 2, splitThreshold: 0 }, { threads: 'auto' }, { kernels: 'js' }, { fma: false }];

describe('loadCpuBackend', () => {
  it.each(CASES)('%o: the same backend as createCpuBackend', async (options) => {
    const sync = keep(createCpuBackend(options));
    const loaded = keep(await loadCpuBackend(options));
    const facts = (b: CpuBackend) => ({ kernels: b.kernels, fma: b.fma, threads: b.threads, description: b.description });
    expect(facts(loaded)).toEqual(facts(sync));
    await Promise.all([sync.ready(), loaded.ready()]);
    const [a, b] = [await compute(sync), await compute(loaded)];
    for (let i = 0; i < a.length; i++) expect(Buffer.from(b[i]!.buffer).equals(Buffer.from(a[i]!.buffer)), `output ${i}`).toBe(true);
  });

  it('wasm kernels where the engine has them (Node 20 has SIMD and shared memory)', async () => {
    expect(keep(await loadCpuBackend()).kernels).toBe('wasm');
  });

  it('invalid options reject with the ConfigError createCpuBackend throws', async () => {
    for (const bad of [{ threads: 0 }, { kernels: 'gpu' }, { splitThreshold: -1 }] as CpuBackendOptions[]) {
      let thrown: unknown;
      try {
        createCpuBackend(bad);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      await expect(loadCpuBackend(bad)).rejects.toThrow((thrown as Error).message);
    }
  });

  it("./register resolves 'cpu' to the wasm backend", async () => {
    await import('../src/register.js');
    const { backend } = await resolveBackend('cpu');
    keep(backend as CpuBackend);
    expect((backend as CpuBackend).kernels).toBe('wasm');
  });
});

describe('new CpuBackend() without an engine', () => {
  it('builds typed-array kernels only until some backend of the thread was given an engine', async () => {
    vi.resetModules();
    const fresh = await import('../src/cpu-backend.js');
    expect(() => new fresh.CpuBackend()).toThrow(
      /wasm kernels are not loaded; create the backend with createCpuBackend\(\) or await loadCpuBackend\(\)/,
    );
    const js = new fresh.CpuBackend({ kernels: 'js' });
    expect(js.kernels).toBe('js');
    js.dispose();
    const { wasmEngine } = await import('../src/wasm/engine.js');
    keep(new fresh.CpuBackend({}, wasmEngine));
    const reused = keep(new fresh.CpuBackend());
    expect(reused.kernels).toBe('wasm');
  });
});
