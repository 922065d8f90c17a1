/**
 * Square float32 matmul on @dorajs/backend-cpu, single-threaded and (once the backend accepts more threads
 * and the machine has more cores) with every core, against a plain i-k-j JavaScript loop as the peer. The goal: ≥ 5 GFLOP/s
 * single-threaded at 1024³.
 */
import { availableParallelism } from 'node:os';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { ConfigError, type Backend, type TensorInfo } from '@dorajs/core';
import { gflopsOf, timeIt, type BenchResult, type BenchSuite } from '../harness.js';
import { naiveMatmul, randomMatrix } from './matmul-reference.js';

const SIZES = [256, 512, 1024];
const QUICK_SIZES = [256, 512];

const suite: BenchSuite = {
  name: 'cpu-matmul',
  async run({ quick }) {
    const sizes = quick ? QUICK_SIZES : SIZES;
    const threadCounts = [...new Set([1, availableParallelism()])];
    const results: BenchResult[] = [];
    for (const n of sizes) {
      const a = randomMatrix(n, n, 1);
      const b = randomMatrix(n, n, 2);
      const flops = 2 * n * n * n;
      const shape = `${n}x${n}x${n}`;
      const peer = await timeIt(() => naiveMatmul(a, b, n, n, n), { warmup: 1, iters: quick || n >= 1024 ? 3 : 5 });
      results.push({
        name: 'matmul',
        backend: 'naive-js',
        shape,
        medianMs: peer.medianMs,
        gflops: gflopsOf(flops, peer.medianMs),
        threads: 1,
        notes: 'i-k-j loop on Float32Array',
      });
      for (const threads of threadCounts) {
        const backend = createBackend(threads);
        if (backend === undefined) continue;
        try {
          const ms = await timeBackendMatmul(backend, a, b, n, quick);
          results.push({
            name: 'matmul',
            backend: backend.name,
            shape,
            medianMs: ms,
            gflops: gflopsOf(flops, ms),
            ratio: peer.medianMs / ms,
            ratioTo: 'naive-js',
            threads,
          });
        } finally {
          backend.dispose();
        }
      }
    }
    return results;
  },
};
export default suite;

/**
 * undefined when the backend cannot use that many threads: it refuses them (ConfigError) or takes them as
 * a bound and reports fewer in `backend.threads` (backend-cpu's kernels are single-threaded for now), so
 * no row claims threads it did not use.
 */
function createBackend(threads: number): Backend | undefined {
  let backend: Backend;
  try {
    backend = createCpuBackend({ threads });
  } catch (error) {
    if (threads > 1 && error instanceof ConfigError) return undefined;
    throw error;
  }
  const used = (backend as { threads?: unknown }).threads;
  if (typeof used === 'number' && used < threads) {
    backend.dispose();
    return undefined;
  }
  return backend;
}

async function timeBackendMatmul(backend: Backend, a: Float32Array, b: Float32Array, n: number, quick: boolean): Promise<number> {
  const info = (data: unknown): TensorInfo => ({ data, shape: [n, n], dtype: 'float32' });
  const ta = info(backend.upload(a, [n, n], 'float32'));
  const tb = info(backend.upload(b, [n, n], 'float32'));
  try {
    const { medianMs } = await timeIt(
      async () => {
        const out = backend.matmul(ta, tb, {}, [n, n]);
        await backend.sync();
        backend.release(out);
      },
      { warmup: 2, iters: quick ? 3 : 7, minMs: quick ? 0 : 500 },
    );
    return medianMs;
  } finally {
    backend.release(ta.data);
    backend.release(tb.data);
  }
}
