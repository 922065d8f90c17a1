/**
 * The backend in a real page: esbuild bundles test/browser/page.ts, a loopback HTTP server serves it twice —
 * under /coi/ with COOP/COEP (cross-origin isolated: shared wasm memory, kernels on Web Workers started from
 * a Blob URL) and under /plain/ without (no shared memory: the wasm kernels on one thread over a resizable
 * non-shared memory, which must match the isolated page's two threads bit for bit) — and Debian's headless
 * Chromium runs it. The page's float32 outputs come back bit-exact and are checked here: two threads against
 * one (bit-identical), against the typed-array kernels in the page and in Node (close).
 * Without Chromium the test is skipped locally and fails in CI.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { chromium, type Browser, type ConsoleMessage } from 'playwright-core';
import { createCpuBackend } from '../src/index.js';
import { CASES, runCase } from './browser/cases.js';
import type { PlainReport, ThreadedReport } from './browser/page.js';
import { relativeError } from '@dorajs/backend-conformance';

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(chromiumPath);
if (!haveChromium && process.env.CI === 'true') throw new Error(`CI requires Chromium at ${chromiumPath} (apt-get install chromium)`);
const skipReason = haveChromium ? '' : `no Chromium at ${chromiumPath}, skipping`;
if (skipReason) console.warn(skipReason);

const ISOLATION: OutgoingHttpHeaders = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
const INDEX = '<!doctype html><meta charset="utf-8"><title>dorajs cpu</title><script type="module" src="page.js"></script>';
/** The page's own limit: it reports hangs itself (ready(), the worker) well before this. */
const PAGE_TIMEOUT = 20_000;

function floats(b64: string): Float32Array {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Index of the first element that differs bit-for-bit (Object.is), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** The isolated page's main-thread report (the /plain/ page must match its threaded outputs bit for bit). */
let threadedOutputs: ThreadedReport | undefined;

/** The typed-array kernels in Node, on the inputs the page used. */
const nodeReference = new Map<string, Float32Array>();

let server: Server | undefined;
let dir: string | undefined;
let browser: Browser | undefined;
let port = 0;

afterAll(async () => {
  await browser?.close();
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface PageRun<T> {
  result: { ok: boolean; error?: string } & T;
  errors: string[];
  /** URLs of the workers Playwright saw. */
  workers: string[];
}

/** Loads `path` in a fresh context and waits for `__result`; every page and console error is collected. */
async function load<T>(path: string): Promise<PageRun<T>> {
  const context = await browser!.newContext();
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    const workers: string[] = [];
    let lastStep = '(none)';
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('crash', () => errors.push('the page crashed'));
    const onConsole = (where: string) => (m: ConsoleMessage) => {
      if (m.type() === 'error') errors.push(`${where}console.error: ${m.text()}`);
      else if (m.text().startsWith('[step] ')) lastStep = m.text().slice(7);
    };
    page.on('console', onConsole(''));
    // Every worker of the page, nested ones included: the pools' Blob-URL workers and the dedicated one.
    // (An uncaught exception in a worker is not a console message: the pool reports it through ready().)
    page.on('worker', (w) => {
      workers.push(w.url());
      w.on('console', onConsole('worker '));
    });
    // 'commit': a page whose main thread spins never fires load; the wait below then says where it stopped.
    await page.goto(`http://127.0.0.1:${port}${path}`, { waitUntil: 'commit' });
    try {
      await page.waitForFunction(() => (globalThis as unknown as { __result?: unknown }).__result !== undefined, null, {
        timeout: PAGE_TIMEOUT,
        polling: 100,
      });
    } catch (e) {
      throw new Error(
        `${path}: no result within ${PAGE_TIMEOUT} ms; last step: ${lastStep} (a spinning main thread?); errors: ${JSON.stringify(errors)}`,
        { cause: e },
      );
    }
    const result = (await page.evaluate(() => (globalThis as unknown as { __result: unknown }).__result)) as PageRun<T>['result'];
    return { result, errors, workers };
  } finally {
    await context.close();
  }
}

function checkThreaded(r: ThreadedReport | { error: string } | undefined, label: string): void {
  expect(r, `${label}: report`).toBeDefined();
  expect((r as { error?: string }).error, `${label}: ran`).toBeUndefined();
  const t = r as ThreadedReport;
  expect(t.crossOriginIsolated, `${label}: crossOriginIsolated`).toBe(true);
  expect(t.features.sharedMemory && t.features.simd, `${label}: SIMD and shared wasm memory`).toBe(true);
  expect(t.threaded, `${label}: the threaded backend`).toMatchObject({ kernels: 'wasm', threads: 2, maxThreads: 2 });
  expect(t.one, `${label}: the one-thread backend`).toMatchObject({ kernels: 'wasm', threads: 1, fma: t.threaded.fma });
  expect(t.js, `${label}: the typed-array backend`).toEqual({ kernels: 'js', threads: 1 });
  expect(t.readyError, `${label}: ready() resolved (workers started from the Blob URL)`).toBeUndefined();
  expect(t.instrumentError, `${label}: task counting`).toBeUndefined();
  for (const c of CASES) {
    const o = t.outputs[c.name]!;
    const [threaded, one, js] = [floats(o.threaded), floats(o.one), floats(o.js)];
    const ref = nodeReference.get(c.name)!;
    expect(threaded.length, `${label} ${c.name}: output size`).toBe(ref.length);
    expect(firstDifference(threaded, one), `${label} ${c.name}: 2 threads bit-identical to 1 thread (first differing index)`).toBe(-1);
    expect(relativeError(threaded, js), `${label} ${c.name}: 2 threads vs the page's typed-array kernels`).toBeLessThanOrEqual(1e-5);
    expect(relativeError(js, ref), `${label} ${c.name}: the page's typed-array kernels vs Node's`).toBeLessThanOrEqual(1e-5);
  }
  expect(
    firstDifference(floats(t.eager), floats(t.outputs[CASES[0]!.name]!.one)),
    `${label}: a matmul before ready() (first differing index)`,
  ).toBe(-1);
  expect(t.unstable, `${label}: repeated threaded runs give the same numbers`).toEqual([]);
  expect(t.dispatched, `${label}: tasks handed to the pool`).toBeGreaterThan(0);
  expect(
    t.dispatched - t.callingThreadTasks,
    `${label}: tasks the Web Worker ran (of ${t.dispatched}, in ${t.rounds} round(s))`,
  ).toBeGreaterThan(0);
  expect(t.live, `${label}: live buffers before dispose`).toEqual({ threaded: 0, one: 0, js: 0 });
  expect(t.afterDispose, `${label}: a disposed backend refuses work`).toMatch(/disposed/);
}

describe.skipIf(!haveChromium)(`cpu backend in headless Chromium${skipReason ? ` (${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    const ref = createCpuBackend({ kernels: 'js' });
    for (const c of CASES) nodeReference.set(c.name, await runCase(ref, c));
    ref.dispose();

    dir = mkdtempSync(join(here, '..', 'node_modules', '.browser-test-'));
    await build({
      entryPoints: [join(here, 'browser', 'page.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      outfile: join(dir, 'page.js'),
      conditions: ['@dorajs/source'],
      logLevel: 'silent',
    });
    const bundle = readFileSync(join(dir, 'page.js'));
    // Every response of /coi/ carries COOP/COEP (the module worker's script too); /plain/ none.
    server = createServer((req, res) => {
      const m = /^\/(coi|plain)\/(page\.js)?$/.exec(req.url ?? '');
      // The browser asks for a favicon on its own: no content, so no 404 in the console.
      if (req.url === '/favicon.ico') return void res.writeHead(204).end();
      if (!m) return void res.writeHead(404).end();
      const headers = {
        'content-type': m[2] ? 'text/javascript' : 'text/html',
        'cache-control': 'no-store',
        ...(m[1] === 'coi' ? ISOLATION : {}),
      };
      res.writeHead(200, headers).end(m[2] ? bundle : INDEX);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
      ],
    });
  }, 30_000);

  it('cross-origin isolated: 2 wasm threads on Web Workers match 1 thread bit for bit and the typed-array kernels closely', async () => {
    const { result, errors, workers } = await load<{ main?: ThreadedReport; worker?: ThreadedReport | { error: string } }>('/coi/');
    console.log(`browser /coi/: workers seen by Playwright: ${workers.map((u) => u.replace(/^blob:.*/, 'blob:…')).join(', ')}`);
    expect(result.error, 'page ran').toBeUndefined();
    expect(errors, 'page and console errors').toEqual([]);
    expect(workers.filter((u) => u.startsWith('blob:')).length, 'pool workers from Blob URLs (one per thread pool)').toBe(2);
    expect(
      workers.filter((u) => u.endsWith('/coi/page.js')),
      'the dedicated module worker',
    ).toHaveLength(1);
    const m = result.main!;
    console.log(
      `browser /coi/ main thread: fma ${m.threaded.fma}, ${m.dispatched - m.callingThreadTasks} of ${m.dispatched} tasks on the Web Worker in ${m.rounds} round(s), ${m.ms} ms`,
    );
    checkThreaded(m, 'page main thread');
    threadedOutputs = m;
    const w = result.worker;
    if (w && !('error' in w))
      console.log(
        `browser /coi/ dedicated worker: ${w.dispatched - w.callingThreadTasks} of ${w.dispatched} tasks on the nested Web Worker in ${w.rounds} round(s), ${w.ms} ms`,
      );
    checkThreaded(w, 'dedicated Worker of the page');
  });

  it('not isolated: the wasm kernels run on one thread over a resizable non-shared memory, bit-identical to the threaded build', async () => {
    const { result, errors } = await load<{ plain?: PlainReport }>('/plain/');
    expect(result.error, 'page ran').toBeUndefined();
    expect(errors, 'page and console errors').toEqual([]);
    const p = result.plain!;
    expect(p.crossOriginIsolated).toBe(false);
    expect(p.sharedArrayBufferGlobal).toBe(false);
    expect(p.features).toMatchObject({ simd: true, sharedMemory: false, resizableMemory: true });
    const coi = threadedOutputs ?? (await load<{ main?: ThreadedReport }>('/coi/')).result.main!;
    expect(p.auto).toEqual({
      kernels: 'wasm',
      threads: 1,
      fma: coi.threaded.fma,
      description: `wasm SIMD${coi.threaded.fma ? ' + FMA' : ''}, 1 thread: page is not cross-origin isolated`,
    });
    // Threads need shared memory: declined (backend.threads says 1, the description says why), not an error.
    expect(p.asked).toEqual({ kernels: 'wasm', threads: 1, maxThreads: 2, description: p.auto.description });
    expect(p.autoThreads).toEqual({ kernels: 'wasm', threads: 1 });
    expect(p.wasmAsked).toEqual([
      { kernels: 'wasm', threads: 1 },
      { kernels: 'wasm', threads: 1 },
    ]);
    for (const c of CASES) {
      const o = p.outputs[c.name]!;
      const threaded = floats(coi.outputs[c.name]!.threaded);
      expect(
        firstDifference(floats(o.auto), threaded),
        `${c.name}: 1 thread here vs 2 threads on the isolated page (first differing index)`,
      ).toBe(-1);
      expect(firstDifference(floats(o.asked), threaded), `${c.name}: threads: 2 (declined) vs 2 threads on the isolated page`).toBe(-1);
      expect(
        relativeError(floats(o.js), nodeReference.get(c.name)!),
        `${c.name}: the page's typed-array kernels vs Node's`,
      ).toBeLessThanOrEqual(1e-5);
    }
    // Growing a non-shared memory detaches its buffer unless it is resizable: tensors made before must survive.
    expect(p.growth.before, 'the heap before the 64 MiB tensor').toBeLessThan(64 * 2 ** 20);
    expect(p.growth.after, 'the heap grew for the 64 MiB tensor').toBeGreaterThan(p.growth.before);
    expect(p.growth).toMatchObject({ sameBuffer: true, intact: true });
    expect(p.growth.matmulAfter, 'a matmul on a tensor made before the growth').toBe(p.growth.matmul);
    expect(p.live).toEqual({ auto: 0, asked: 0, js: 0 });
  });
});
