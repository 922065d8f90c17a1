/**
 * The CPU comparison (issues 8 and 9): @dorajs/backend-cpu against its honest peers, TensorFlow.js'
 * tfjs-backend-cpu and tfjs-backend-wasm (XNNPACK, SIMD), side by side in one run on the same machine.
 *
 * Rows: matmul n×n·n×n (256…2048; quick: 256, 512) and the DoRA weight norm ‖W + s·B·A‖ per row
 * (4096×4096, r 16; quick: 1024×1024) through core's `ops.weightNorm`, i.e. the backend's fused kernel when
 * it has one and core's composite otherwise. Ratios are against tfjs-wasm (> 1 = faster than tfjs-wasm).
 */
import { availableParallelism } from 'node:os';
import { ops, tensor, type Backend, type TensorInfo } from '@dorajs/core';
import { gbpsOf, gflopsOf, timeIt, type BenchResult, type BenchSuite, type Timing } from '../harness.js';
import { type Contender, REFERENCE, tfjsContenders } from '../peers.js';
import { randomMatrix } from './matmul-reference.js';

/** One cell's time budget: calls slower than this are timed once (tfjs-cpu at 2048³ takes about a minute). */
const CELL_BUDGET_MS = 4000;

async function createPeers(): Promise<{ peers: Contender[]; missing: string[] }> {
  const peers: Contender[] = [];
  const missing: string[] = [];
  const cpu = await loadBackendCpu();
  if (typeof cpu === 'string') missing.push(cpu);
  else peers.push({ label: 'cpu', backend: cpu, threads: threadsOf(cpu), notes: '@dorajs/backend-cpu' });
  peers.push(...(await tfjsContenders(['cpu', 'wasm'])));
  return { peers, missing };
}

/** @dorajs/backend-cpu is resolved at run time so this suite still runs (without that row) where it is absent. */
async function loadBackendCpu(): Promise<Backend | string> {
  const specifier = '@dorajs/backend-cpu';
  try {
    const mod = (await import(specifier)) as { createCpuBackend(o?: { threads?: number }): Backend | Promise<Backend> };
    // Every core it may use; rows report the threads it really used, and the per-core ratio when that differs.
    return await mod.createCpuBackend({ threads: availableParallelism() });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ERR_MODULE_NOT_FOUND'
      ? 'no backend-cpu rows: @dorajs/backend-cpu is not installed or not built'
      : `no backend-cpu rows: it failed to start (${(e as Error).message.split('\n')[0]})`;
  }
}

function threadsOf(backend: Backend): number {
  const t = (backend as { threads?: unknown }).threads;
  return typeof t === 'number' && t > 0 ? t : 1;
}

/** Times `fn` within the cell budget: the first call warms up and predicts how many more fit. */
async function timeCell(fn: () => Promise<void>): Promise<Timing & { note?: string }> {
  const start = performance.now();
  await fn();
  const first = performance.now() - start;
  if (first > CELL_BUDGET_MS) return { medianMs: first, samples: [first], note: 'one timed call (slow)' };
  const iters = Math.min(10, Math.max(3, Math.floor(CELL_BUDGET_MS / Math.max(first, 1e-3))));
  return timeIt(fn, { warmup: first > CELL_BUDGET_MS / 4 ? 0 : 1, iters });
}

function upload(be: Backend, rows: number, cols: number, seed: number): TensorInfo {
  const shape = [rows, cols];
  return { data: be.upload(randomMatrix(rows, cols, seed), shape, 'float32'), shape, dtype: 'float32' };
}

async function matmulRows(peers: readonly Contender[], sizes: readonly number[]): Promise<BenchResult[]> {
  const rows: BenchResult[] = [];
  for (const n of sizes) {
    for (const peer of peers) {
      const be = peer.backend;
      const a = upload(be, n, n, 1);
      const b = upload(be, n, n, 2);
      const t = await timeCell(async () => {
        be.release(be.matmul(a, b, {}, [n, n]));
        await be.sync();
      });
      be.release(a.data);
      be.release(b.data);
      const gflops = gflopsOf(2 * n ** 3, t.medianMs);
      rows.push({
        name: 'matmul',
        backend: peer.label,
        shape: `${n}x${n}x${n}`,
        medianMs: t.medianMs,
        gflops,
        threads: peer.threads,
        notes: note(peer, gflops, t.note),
      });
    }
  }
  return withRatios(rows);
}

async function weightNormRows(peers: readonly Contender[], out: number, inF: number, r: number): Promise<BenchResult[]> {
  const rows: BenchResult[] = [];
  for (const peer of peers) {
    const be = peer.backend;
    const w = tensor(randomMatrix(out, inF, 3), [out, inF], { backend: be });
    const a = tensor(randomMatrix(r, inF, 4), [r, inF], { backend: be });
    const b = tensor(randomMatrix(out, r, 5), [out, r], { backend: be });
    const t = await timeCell(async () => {
      ops.weightNorm(w, a, b, 2).dispose();
      await be.sync();
    });
    for (const x of [w, a, b]) x.dispose();
    // B·A (2·r flops per element) plus add, square and sum; bandwidth counts reading W once, the floor.
    const gflops = gflopsOf(out * inF * (2 * r + 3), t.medianMs);
    const how = be.weightNorm ? 'fused kernel' : 'core composite';
    rows.push({
      name: 'dora-weight-norm',
      backend: peer.label,
      shape: `${out}x${inF} r${r}`,
      medianMs: t.medianMs,
      gflops,
      gbps: gbpsOf(out * inF * 4, t.medianMs),
      threads: peer.threads,
      notes: note(peer, gflops, t.note, how),
    });
  }
  return withRatios(rows);
}

function note(peer: Contender, gflops: number, ...extra: (string | undefined)[]): string {
  const perThread = `${(gflops / peer.threads).toFixed(2)} GFLOP/s per thread`;
  return [peer.notes, perThread, ...extra].filter(Boolean).join('; ');
}

/**
 * ratio = reference time / this time for the same op and shape. When the thread counts differ, the notes
 * also give the ratio per core (issue 9 judges backend-cpu per core against tfjs-wasm).
 */
function withRatios(rows: BenchResult[]): BenchResult[] {
  return rows.map((row) => {
    const ref = rows.find((r) => r.backend === REFERENCE && r.name === row.name && r.shape === row.shape);
    if (!ref) return row;
    const ratio = ref.medianMs / row.medianMs;
    const perCore = row.threads === ref.threads ? '' : `; ${((ratio * ref.threads) / row.threads).toFixed(2)}× per core`;
    return { ...row, ratio, ratioTo: REFERENCE, notes: `${row.notes ?? ''}${perCore}` };
  });
}

const suite: BenchSuite = {
  name: 'cpu-peers',
  async run({ quick }) {
    const { peers, missing } = await createPeers();
    try {
      const results = [
        ...(await matmulRows(peers, quick ? [256, 512] : [256, 512, 1024, 2048])),
        ...(await (quick ? weightNormRows(peers, 1024, 1024, 16) : weightNormRows(peers, 4096, 4096, 16))),
      ];
      if (missing.length) results[0] = { ...results[0]!, notes: `${results[0]!.notes ?? ''}; ${missing.join('; ')}` };
      return results;
    } finally {
      for (const p of peers) p.backend.dispose();
    }
  },
};

export default suite;
