/**
 * Runs in headless Chromium (bundled by test/browser.test.ts) in three places:
 * - /coi/ (served with COOP/COEP, so cross-origin isolated): the wasm kernels on two threads (Web Workers
 *   started from a Blob URL; the page's main thread may not block, so the pool spins), one thread and the
 *   typed-array kernels, on the same inputs; then the same again inside a dedicated module Worker of the
 *   page (where the calling thread may block in Atomics.wait).
 * - /plain/ (no COOP/COEP): no shared memory, so the wasm kernels run on one thread over a non-shared memory
 *   whose buffer is resizable (growing it keeps every tensor's view valid); and the typed-array kernels.
 * Results go to `globalThis.__result` with float32 outputs as base64 (bit-exact), compared in Node.
 */
import { ConfigError } from '@dorajs/core';
import { createCpuBackend, type CpuBackend } from '../../src/index.js';
import { wasmFeatures, type WasmFeatures } from '../../src/wasm/features.js';
import { WasmRuntime } from '../../src/wasm/runtime.js';
import { CASES, runCase } from './cases.js';

type Context = 'main' | 'worker';

interface WebWorker {
  onmessage: ((e: { data: unknown }) => void) | null;
  onerror: ((e: { message?: string }) => void) | null;
  postMessage(message: unknown): void;
  terminate(): void;
}

// The package compiles without DOM typings; the page reaches the browser globals through globalThis.
const g = globalThis as unknown as {
  crossOriginIsolated?: boolean;
  document?: unknown;
  location: { pathname: string; href: string };
  SharedArrayBuffer?: unknown;
  Worker: new (url: string, options: { type: 'module' }) => WebWorker;
  onmessage: ((e: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
  btoa(s: string): string;
  __result?: unknown;
};

const context: Context = g.document === undefined ? 'worker' : 'main';
const step = (s: string) => console.log(`[step] ${context}: ${s}`);

function message(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e instanceof Error ? e : new Error(String(e)))),
    );
  });
}

function b64(a: Float32Array): string {
  const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return g.btoa(s);
}

/**
 * Counts the tasks the backend's worker pool hands out and those the calling thread runs itself, so the
 * difference is what the Web Workers computed. Reaches into private fields (WorkerPool.run, WorkerPool.fns):
 * if they are renamed this says so instead of counting.
 */
function instrument(be: CpuBackend): { dispatched: number; calling: number } | string {
  type Fn = (task: number, args: number, tid: number) => void;
  const pool = (be as unknown as { pool?: { run?: (name: string, tasks: number, args: number) => void; fns?: Fn[] } | null }).pool;
  if (!pool || typeof pool.run !== 'function' || !Array.isArray(pool.fns))
    return 'the backend has no WorkerPool with run() and fns[] (pool.ts changed? update test/browser/page.ts)';
  const counts = { dispatched: 0, calling: 0 };
  const run = pool.run.bind(pool);
  pool.run = (name, tasks, args) => {
    counts.dispatched += tasks;
    run(name, tasks, args);
  };
  const fns = pool.fns;
  fns.forEach((f, i) => {
    fns[i] = (task, args, tid) => {
      counts.calling++;
      f(task, args, tid);
    };
  });
  return counts;
}

export interface ThreadedReport {
  context: Context;
  crossOriginIsolated: boolean;
  features: WasmFeatures;
  threaded: { kernels: string; threads: number; maxThreads: number; fma: boolean };
  one: { kernels: string; threads: number; fma: boolean };
  js: { kernels: string; threads: number };
  readyError?: string;
  /** CASES[0] on the threaded backend before its workers were up (the calling thread must not wait for them). */
  eager: string;
  outputs: Record<string, { threaded: string; one: string; js: string }>;
  /** Repeated threaded rounds (until the workers took a task) whose output differed from the first. */
  unstable: string[];
  rounds: number;
  dispatched: number;
  callingThreadTasks: number;
  instrumentError?: string;
  live: { threaded: number; one: number; js: number };
  afterDispose: string;
  ms: number;
}

async function threadedSuite(): Promise<ThreadedReport> {
  const t0 = performance.now();
  const features = wasmFeatures();
  step('create a 2-thread wasm backend');
  const threaded = createCpuBackend({ threads: 2, kernels: 'wasm', splitThreshold: 0 });
  const counts = instrument(threaded);
  step('matmul before ready()');
  const eager = b64(await runCase(threaded, CASES[0]!));
  step('await ready()');
  let readyError: string | undefined;
  try {
    await withTimeout(threaded.ready(), 5_000, 'ready()');
  } catch (e) {
    readyError = message(e);
  }
  const one = createCpuBackend({ threads: 1, kernels: 'wasm' });
  const js = createCpuBackend({ kernels: 'js' });
  const outputs: ThreadedReport['outputs'] = {};
  for (const c of CASES) {
    step(c.name);
    outputs[c.name] = { threaded: b64(await runCase(threaded, c)), one: b64(await runCase(one, c)), js: b64(await runCase(js, c)) };
  }
  // The workers wake within microseconds, but nothing forces them to win a task in any one run: repeat
  // (checking the numbers stay the same) until they have, for at most 40 rounds.
  const unstable: string[] = [];
  let rounds = 1;
  for (; typeof counts !== 'string' && counts.dispatched === counts.calling && rounds < 40 && readyError === undefined; rounds++) {
    for (const c of CASES)
      if (b64(await runCase(threaded, c)) !== outputs[c.name]!.threaded) unstable.push(`${c.name} (round ${rounds + 1})`);
  }
  const live = { threaded: threaded.liveBuffers(), one: one.liveBuffers(), js: js.liveBuffers() };
  step('dispose');
  threaded.dispose();
  one.dispose();
  js.dispose();
  let afterDispose = 'no error';
  try {
    await runCase(threaded, CASES[0]!);
  } catch (e) {
    afterDispose = message(e);
  }
  return {
    context,
    crossOriginIsolated: g.crossOriginIsolated === true,
    features,
    threaded: { kernels: threaded.kernels, threads: threaded.threads, maxThreads: threaded.maxThreads, fma: threaded.fma },
    one: { kernels: one.kernels, threads: one.threads, fma: one.fma },
    js: { kernels: js.kernels, threads: js.threads },
    ...(readyError === undefined ? {} : { readyError }),
    eager,
    outputs,
    unstable,
    rounds,
    dispatched: typeof counts === 'string' ? 0 : counts.dispatched,
    callingThreadTasks: typeof counts === 'string' ? 0 : counts.calling,
    ...(typeof counts === 'string' ? { instrumentError: counts } : {}),
    live,
    afterDispose,
    ms: Math.round(performance.now() - t0),
  };
}

/** The same suite inside a dedicated module Worker of this page (this bundle, started in worker context). */
function inWorker(): Promise<ThreadedReport> {
  return new Promise<ThreadedReport>((resolve, reject) => {
    const worker = new g.Worker(new URL('page.js', g.location.href).href, { type: 'module' });
    const t = setTimeout(() => (worker.terminate(), reject(new Error('the dedicated worker did not report within 10 s'))), 10_000);
    worker.onmessage = (e) => {
      clearTimeout(t);
      worker.terminate();
      const m = e.data as { report?: ThreadedReport; error?: string };
      if (m.report) resolve(m.report);
      else reject(new Error(`in the dedicated worker: ${m.error}`));
    };
    worker.onerror = (e) => (clearTimeout(t), reject(new Error(`the dedicated worker failed: ${e.message ?? String(e)}`)));
    worker.postMessage('run');
  });
}

export interface PlainReport {
  crossOriginIsolated: boolean;
  sharedArrayBufferGlobal: boolean;
  features: WasmFeatures;
  auto: { kernels: string; threads: number; fma: boolean; description: string };
  asked: { kernels: string; threads: number; maxThreads: number; description: string; readyError?: string };
  autoThreads: { kernels: string; threads: number };
  /** createCpuBackend({ kernels: 'wasm' }) and ({ kernels: 'wasm', threads: 2 }): what they made or threw. */
  wasmAsked: { kernels?: string; threads?: number; error?: string }[];
  outputs: Record<string, { auto: string; asked: string; js: string }>;
  /** A tensor uploaded before the heap grew by 64 MiB: its values read back after, and used by a matmul. */
  growth: { before: number; after: number; sameBuffer: boolean; intact: boolean; matmul: string; matmulAfter: string };
  live: { auto: number; asked: number; js: number };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** Not cross-origin isolated: no shared memory, so the wasm kernels run on one thread over a resizable buffer. */
async function plainSuite(): Promise<PlainReport> {
  step('default backend');
  const auto = createCpuBackend();
  step('threads: 2 without isolation');
  const asked = createCpuBackend({ threads: 2, splitThreshold: 0 });
  let readyError: string | undefined;
  try {
    await withTimeout(asked.ready(), 5_000, 'ready()');
  } catch (e) {
    readyError = message(e);
  }
  const autoThreads = createCpuBackend({ threads: 'auto' });
  const js = createCpuBackend({ kernels: 'js' });
  const wasmAsked = [{ kernels: 'wasm' as const }, { kernels: 'wasm' as const, threads: 2 }].map((options) => {
    try {
      const be = createCpuBackend(options);
      be.dispose();
      return { kernels: be.kernels, threads: be.threads };
    } catch (e) {
      return { error: `${e instanceof ConfigError ? '' : '(not a ConfigError) '}${message(e)}` };
    }
  });
  const outputs: PlainReport['outputs'] = {};
  for (const c of CASES) {
    step(c.name);
    outputs[c.name] = { auto: b64(await runCase(auto, c)), asked: b64(await runCase(asked, c)), js: b64(await runCase(js, c)) };
  }
  step('heap growth');
  const runtime = WasmRuntime.get();
  const buffer = runtime?.buffer;
  const before = buffer?.byteLength ?? 0;
  const values = Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i));
  const kept = auto.upload(values, [64, 64], 'float32');
  const matmul = (): string => {
    const h = auto.matmul(
      { data: kept, shape: [64, 64], dtype: 'float32' },
      { data: kept, shape: [64, 64], dtype: 'float32' },
      {},
      [64, 64],
    );
    const out = b64(new Float32Array(h.values as Float32Array));
    auto.release(h);
    return out;
  };
  const first = matmul();
  const big = auto.upload(new Float32Array(16 * 2 ** 20), [16, 2 ** 20], 'float32');
  const after = runtime?.buffer.byteLength ?? 0;
  const growth = {
    before,
    after,
    sameBuffer: runtime !== null && runtime.buffer === buffer,
    intact: sameBits(kept.values as Float32Array, values),
    matmul: first,
    matmulAfter: matmul(),
  };
  auto.release(big);
  auto.release(kept);
  const report: PlainReport = {
    crossOriginIsolated: g.crossOriginIsolated === true,
    sharedArrayBufferGlobal: typeof g.SharedArrayBuffer === 'function',
    features: wasmFeatures(),
    auto: { kernels: auto.kernels, threads: auto.threads, fma: auto.fma, description: auto.description },
    asked: {
      kernels: asked.kernels,
      threads: asked.threads,
      maxThreads: asked.maxThreads,
      description: asked.description,
      ...(readyError === undefined ? {} : { readyError }),
    },
    autoThreads: { kernels: autoThreads.kernels, threads: autoThreads.threads },
    wasmAsked,
    outputs,
    growth,
    live: { auto: auto.liveBuffers(), asked: asked.liveBuffers(), js: js.liveBuffers() },
  };
  auto.dispose();
  asked.dispose();
  autoThreads.dispose();
  js.dispose();
  return report;
}

if (context === 'worker') {
  g.onmessage = () => {
    g.onmessage = null;
    threadedSuite().then(
      (report) => g.postMessage({ report }),
      (e: unknown) => g.postMessage({ error: String((e as Error)?.stack ?? e) }),
    );
  };
} else {
  const main = async () => {
    if (g.location.pathname.startsWith('/plain/')) return { ok: true, plain: await plainSuite() };
    const mainReport = await threadedSuite();
    step('dedicated worker');
    let worker: ThreadedReport | { error: string };
    try {
      worker = await inWorker();
    } catch (e) {
      worker = { error: message(e) };
    }
    return { ok: true, main: mainReport, worker };
  };
  main()
    .then((r) => (g.__result = r))
    .catch((e: unknown) => (g.__result = { ok: false, error: String((e as Error)?.stack ?? e) }));
}
