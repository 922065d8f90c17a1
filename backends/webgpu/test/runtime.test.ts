/** Runtime behaviour: pipeline reuse across shapes, lazy submission, readbacks, typed failures, lifetime. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError, type TensorInfo } from '@dorajs/core';
import { build } from 'esbuild';
import { acquireDevice, createWebGpuBackend, DeviceLostError, GpuOutOfMemoryError, type GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { randn } from './helpers/reference.js';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());
const here = dirname(fileURLToPath(import.meta.url));

function info(data: GpuTensor, shape: readonly number[]): TensorInfo<GpuTensor> {
  return { data, shape, dtype: data.dtype };
}
function up(shape: number[], seed: number): TensorInfo<GpuTensor> {
  const n = shape.reduce((a, b) => a * b, 1);
  return info(be.upload(randn(n, seed), shape, 'float32'), shape);
}

describe.skipIf(!backend)(`webgpu runtime${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('serves three shapes from one pipeline per program (shapes live in uniforms)', async () => {
    const before = be.stats().pipelines;
    for (const [m, k, n] of [
      [3, 40, 5],
      [17, 33, 9],
      [64, 70, 31],
    ] as const) {
      be.matmul(up([m, k], 1), up([k, n], 2), {}, [m, n]);
    }
    be.flush();
    expect(be.stats().pipelines - before).toBe(1);
    const mid = be.stats().pipelines;
    for (const shape of [[7], [3, 9], [2, 5, 11]]) be.binary('add', up(shape, 3), up(shape, 4), shape);
    expect(be.stats().pipelines - mid).toBe(1);
    await be.sync();
  });

  it('records a DoRA-style forward without submitting or reading back until download', async () => {
    await be.sync();
    const s0 = be.stats();
    const [T, inn, out, r] = [4, 32, 24, 4];
    const x = up([T, inn], 5);
    const W = up([out, inn], 6);
    const A = up([r, inn], 7);
    const B = up([out, r], 8);
    const m = up([out], 9);
    const norm = info(be.weightNorm(W, A, B, 2, {}), [out]);
    const g = info(be.binary('div', m, norm, [out]), [out]);
    const base = info(be.matmul(x, W, { transposeB: true }, [T, out]), [T, out]);
    const ax = info(be.matmul(x, A, { transposeB: true }, [T, r]), [T, r]);
    const lora = info(be.matmul(ax, B, { transposeB: true }, [T, out]), [T, out]);
    const y = info(be.doraCompose(base, lora, g, 2, null), [T, out]);
    const s1 = be.stats();
    expect(s1.dispatches - s0.dispatches).toBeGreaterThanOrEqual(6);
    expect(s1.readbacks - s0.readbacks).toBe(0);
    expect(s1.submits - s0.submits).toBe(0);
    await be.download(y);
    const s2 = be.stats();
    expect(s2.readbacks - s0.readbacks).toBe(1);
    expect(s2.submits - s0.submits).toBe(1);
  });

  it('reuses released buffers instead of creating new ones', async () => {
    await be.sync();
    const shape = [256, 256];
    const warm = up(shape, 1);
    be.release(warm.data);
    await be.sync();
    const created = be.stats().created;
    for (let i = 0; i < 5; i++) {
      const t = up(shape, i);
      be.release(t.data);
      await be.sync();
    }
    expect(be.stats().created).toBe(created);
  });

  it('rejects a tensor whose single row exceeds a buffer with GpuOutOfMemoryError naming the bytes', () => {
    // Larger tensors are split over buffers by rows (split.test.ts); one row must still fit one buffer.
    const huge = be.maxBufferBytes / 4 + 1024;
    expect(() => be.fill([1, huge], 0, 'float32')).toThrow(GpuOutOfMemoryError);
    expect(() => be.fill([1, huge], 0, 'float32')).toThrow(/does not fit a buffer of \d+ bytes/);
  });

  it('surfaces device.destroy() mid-run as DeviceLostError, on the pending download and afterwards', async () => {
    const own = await createWebGpuBackend();
    const x = own.upload(randn(4096, 1), [64, 64], 'float32');
    const y = own.matmul(info(x, [64, 64]), info(x, [64, 64]), {}, [64, 64]);
    const pending = own.download(info(y, [64, 64]));
    own.device.destroy();
    await expect(pending).rejects.toBeInstanceOf(DeviceLostError);
    await new Promise((r) => setTimeout(r, 50));
    expect(() => own.unary('exp', info(x, [64, 64]))).toThrow(DeviceLostError);
    expect(() => own.unary('exp', info(x, [64, 64]))).toThrow(BackendError);
    own.dispose();
  });

  it('runs on an injected GPUDevice and leaves it alive on dispose', async () => {
    const { device } = await acquireDevice();
    const injected = await createWebGpuBackend({ device });
    const t = injected.fill([3], 4, 'float32');
    expect(Array.from((await injected.download(info(t, [3]))) as Float32Array)).toEqual([4, 4, 4]);
    injected.dispose();
    const again = await createWebGpuBackend({ device });
    const u = again.fill([2], 1, 'int32');
    expect(Array.from((await again.download(info(u, [2]))) as Int32Array)).toEqual([1, 1]);
    again.dispose();
    device.destroy();
  });

  it('lets the Node process exit on its own after dispose', async () => {
    const dir = mkdtempSync(join(here, '..', 'node_modules', '.exit-probe-'));
    try {
      const outfile = join(dir, 'probe.mjs');
      await build({
        entryPoints: [join(here, 'fixtures', 'exit-probe.ts')],
        bundle: true,
        platform: 'node',
        format: 'esm',
        outfile,
        external: ['webgpu'],
        conditions: ['@dorajs/source'],
        logLevel: 'silent',
      });
      const res = spawnSync(process.execPath, [outfile], { timeout: 60_000, encoding: 'utf8', env: { ...process.env } });
      expect(res.error, res.stderr).toBeUndefined();
      expect(res.stdout.trim()).toBe('ok 6');
      expect(res.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
