/**
 * Loading a model into a web page: a random Llama of ~100M parameters (~10M in quick runs), BF16 on disk,
 * served on loopback with HTTP Range requests and loaded in Debian's Chromium by `loadModel(url, { keepWidth })`
 * — on the CPU backend (wasm kernels, one thread, weights in the wasm heap) and on WebGPU
 * (SwiftShader). Peak memory above the level before loading, three ways:
 *   - `Runtime.getHeapUsage` (DevTools protocol) sampled every 20 ms: JS heap + ArrayBuffer backing stores (the wasm heap
 *     included) — what the page itself allocates;
 *   - the peak RSS of the renderer and GPU processes (their pids from `SystemInfo.getProcessInfo`): per process
 *     the larger of VmHWM (reset through /proc/<pid>/clear_refs) and VmRSS sampled every 20 ms — VmHWM alone
 *     can miss a peak that was freed again (seen: a renderer's VmHWM fell from +160 to +63 MiB) —, summed:
 *     everything, SwiftShader's GPU buffers included.
 *   - the same processes' peak PSS (proportional set size, `Pss:` of /proc/<pid>/smaps_rollup), sampled with
 *     the RSS every 20 ms (PSS has no high-water mark) and summed the same way. This is the goal's number.
 *     RSS counts a page shared by several processes in each of them, so the RSS sum counts twice the shared
 *     memory through which the renderer hands `writeBuffer` data to the GPU process (~9–10 MiB mapped in both,
 *     the gpuload notes); PSS charges each process 1/n of a page n processes map, so the sum counts it once.
 *     Both are printed. Chrome's browser process is not counted (in neither sum): its PSS growth is printed
 *     beside, so a shared page whose share moved there would show.
 *     Not counted: the renderer of Chrome's own UI (`--top-chrome-webui` on its command line). It hosts no web
 *     page, yet grows by 18–37 MiB during a run whatever the page does (also when the page only fetches the
 *     file and discards it: the loadmem probes); its growth is reported beside the row instead. Every other
 *     renderer (the page's, a spare one) and the GPU process count, as before.
 * Two peaks: loading (`loadModel`, then the backend's `sync`: on WebGPU the queue has executed every write, so
 * the weights sit in the GPU process), and loading followed by the first forward (four tokens), which on
 * SwiftShader includes compiling every shader the forward uses. Goal: the loading peak's PSS ≤ 1.2× the
 * weights' bytes. The row also splits the peak by process: the page's renderer (the renderer that appeared with the
 * page), the GPU process, and other renderers (counted).
 *
 * The page is a target Playwright does not attach to, driven through a CDP session of our own without the
 * Network domain: with it enabled (Playwright enables it on every page it drives), the renderer's DevTools
 * agent keeps a copy of every response body below ~20 MB, up to ~200 MB in all — a copy a user's page never
 * makes, and a whole 190 MiB checkpoint read in 8 MiB ranges (benchmarks/probe in the loadmem notes).
 */
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumSkipReason, ISOLATION_HEADERS, launchChromium, serve } from '@dorajs/web-tests/chromium';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { type BenchResult, type BenchSuite, SuiteSkipped } from '../harness.js';
import { FULL, QUICK, writeCheckpoint } from './model-load.js';

const GOAL = 1.2;
const MIB = 2 ** 20;
const mib = (bytes: number): string => `${(bytes / MIB).toFixed(0)} MiB`;

/** The page's script, bundled for the browser from web-load/page.ts (compiled next to this file). */
async function pageScript(): Promise<string> {
  const entry = fileURLToPath(new URL('../web-load/page.js', import.meta.url));
  const out = await build({ entryPoints: [entry], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
  return out.outputFiles[0]!.text;
}

/**
 * Serves `/` (the page), `/page.js` and the files of `dir` under `/model/`, honouring single Range requests;
 * cross-origin isolated, so the CPU backend gets its wasm heap as in a real deployment.
 */
async function site(dir: string, script: string, problems: string[]) {
  const html = '<!doctype html><meta charset="utf-8"><title>web-load</title><script type="module" src="/page.js"></script>';
  return serve(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value!);
    if (path === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    if (path === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    const file = /^\/model\/([\w.-]+)$/.exec(path)?.[1];
    const handle = file ? await open(join(dir, file)).catch(() => null) : null;
    if (!handle) {
      // The loader probes for optional files (the shard index): a 404 under /model/ is expected.
      if (!path.startsWith('/model/')) problems.push(`${path}: HTTP 404`);
      return void res.writeHead(404).end();
    }
    try {
      const size = (await handle.stat()).size;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      const end = m?.[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      const body = Buffer.alloc(end - start + 1);
      await handle.read(body, 0, body.length, start);
      const headers = { 'content-length': body.length, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
      if (m) res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}` }).end(body);
      else res.writeHead(200, headers).end(body);
    } finally {
      await handle.close();
    }
  });
}

interface Proc {
  readonly id: number;
  readonly type: string;
  /** Chrome's own UI renderer (see the file's comment): measured, not counted. */
  readonly ui?: boolean;
}

/** The renderer and GPU processes. */
async function processes(browser: Browser): Promise<Proc[]> {
  const session = await browser.newBrowserCDPSession();
  const { processInfo } = (await session.send('SystemInfo.getProcessInfo')) as { processInfo: Proc[] };
  await session.detach();
  const out: Proc[] = [];
  for (const p of processInfo.filter((p) => p.type === 'renderer' || p.type === 'GPU')) {
    // Chromium rewrites its renderers' process titles: the arguments may be one space-separated string.
    const cmdline = await readFile(`/proc/${p.id}/cmdline`, 'utf8').catch(() => '');
    out.push({ id: p.id, type: p.type, ui: p.type === 'renderer' && /(^|[\s\0])--top-chrome-webui([\s\0]|$)/.test(cmdline) });
  }
  return out;
}

/** Proportional set size: a page mapped by n processes counts 1/n in each (see the file's comment). */
async function pssBytes(pid: number): Promise<number> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  const kb = /^Pss:\s+(\d+) kB/m.exec(rollup)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

/** Chrome's browser process (not counted: its PSS growth is printed beside). */
async function browserPid(browser: Browser): Promise<number | null> {
  const session = await browser.newBrowserCDPSession();
  const { processInfo } = (await session.send('SystemInfo.getProcessInfo')) as { processInfo: Proc[] };
  await session.detach();
  return processInfo.find((p) => p.type === 'browser')?.id ?? null;
}

async function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

/** A page in its own target, driven through a session of ours (no Network domain): see the file's comment. */
interface RawPage {
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  evaluate<T>(expression: string): Promise<T>;
  readonly errors: string[];
  close(): Promise<void>;
}

async function rawPage(browser: Browser, url: string): Promise<RawPage> {
  const session = await browser.newBrowserCDPSession();
  const { targetId } = (await session.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
  // Not flattened: Playwright's browser session forwards the target's messages as events.
  const { sessionId } = (await session.send('Target.attachToTarget', { targetId, flatten: false })) as { sessionId: string };
  const waiting = new Map<number, (m: { result?: Record<string, unknown>; error?: unknown }) => void>();
  const errors: string[] = [];
  let id = 0;
  session.on('Target.receivedMessageFromTarget', (e: { message: string }) => {
    const m = JSON.parse(e.message) as {
      id?: number;
      method?: string;
      params?: Record<string, unknown>;
      result?: Record<string, unknown>;
      error?: unknown;
    };
    if (m.id !== undefined) {
      waiting.get(m.id)?.(m);
      waiting.delete(m.id);
    } else if (m.method === 'Runtime.exceptionThrown') {
      errors.push(`pageerror: ${JSON.stringify(m.params).slice(0, 500)}`);
    } else if (m.method === 'Runtime.consoleAPICalled' && (m.params as { type: string }).type === 'error') {
      errors.push(`console.error: ${JSON.stringify((m.params as { args: unknown }).args).slice(0, 500)}`);
    }
  });
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const i = ++id;
      waiting.set(i, (m) => (m.error ? reject(new Error(`${method}: ${JSON.stringify(m.error)}`)) : resolve(m.result ?? {})));
      session.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id: i, method, params }) }).catch(reject);
    });
  const evaluate = async <T>(expression: string): Promise<T> => {
    const r = (await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })) as {
      result: { value: T };
      exceptionDetails?: unknown;
    };
    if (r.exceptionDetails) throw new Error(`web-load page: ${JSON.stringify(r.exceptionDetails).slice(0, 500)}`);
    return r.result.value;
  };
  await send('Runtime.enable');
  await send('Page.enable');
  await send('Page.navigate', { url });
  return {
    send,
    evaluate,
    errors,
    close: async () => {
      await session.send('Target.closeTarget', { targetId }).catch(() => {});
      await session.detach().catch(() => {});
    },
  };
}

async function heapBytes(page: RawPage): Promise<number> {
  const h = (await page.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
  return h.usedSize + (h.backingStorageSize ?? 0);
}

/** Peak RSS or PSS above the baseline, in bytes: the sum (without `ui`), and by role. */
interface Peaks {
  total: number;
  page: number;
  gpu: number;
  other: number;
  /** Chrome's UI renderer: not in `total`. */
  ui: number;
}

/** A peak both ways (see the file's comment); `browserPss`: the browser process's PSS growth, not counted. */
interface Both {
  rss: Peaks;
  pss: Peaks;
  browserPss: number;
}

interface LoadResult {
  ms: number;
  tensors: number;
  backendBytes: number | null;
  finite: boolean;
  peakHeap: number;
  load: Both;
  withForward: Both;
  hasBackingStore: boolean;
}

async function measure(browser: Browser, origin: string, backend: 'cpu' | 'webgpu', served: string[]): Promise<LoadResult> {
  const earlier = new Set((await processes(browser)).map((p) => p.id));
  const page = await rawPage(browser, `${origin}/`);
  try {
    const deadline = Date.now() + 60_000;
    while (!(await page.evaluate<boolean>('globalThis.__ready === true').catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`web-load page on ${backend}: the page did not start`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.evaluate(`globalThis.__init(${JSON.stringify(backend)})`);
    await page.send('HeapProfiler.collectGarbage');
    const usage = (await page.send('Runtime.getHeapUsage')) as { backingStorageSize?: number };
    const procs = await processes(browser);
    const role = (p: Proc): keyof Omit<Peaks, 'total'> => (p.type === 'GPU' ? 'gpu' : p.ui ? 'ui' : earlier.has(p.id) ? 'other' : 'page');
    for (const p of procs) await writeFile(`/proc/${p.id}/clear_refs`, '5').catch(() => {});
    const rssBefore = await Promise.all(procs.map((p) => statusKb(p.id, 'VmRSS')));
    const rssPeak = [...rssBefore];
    const bpid = await browserPid(browser);
    const samplePss = () => Promise.all([...procs.map((p) => pssBytes(p.id)), bpid === null ? 0 : pssBytes(bpid)]);
    const pssBefore = await samplePss();
    const pssPeak = [...pssBefore];
    const heapBefore = await heapBytes(page);
    let peakHeap = heapBefore;
    let sampling = true;
    const sampleRss = async () => {
      const [now, pss] = await Promise.all([Promise.all(procs.map((p) => statusKb(p.id, 'VmRSS'))), samplePss()]);
      now.forEach((r, i) => (rssPeak[i] = Math.max(rssPeak[i]!, r)));
      pss.forEach((r, i) => (pssPeak[i] = Math.max(pssPeak[i]!, r)));
    };
    const sampler = (async () => {
      while (sampling) {
        peakHeap = Math.max(peakHeap, await heapBytes(page).catch(() => 0));
        await sampleRss();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const peaks = async (): Promise<Both> => {
      await sampleRss();
      const hwm = await Promise.all(procs.map((p) => statusKb(p.id, 'VmHWM')));
      const rss: Peaks = { total: 0, page: 0, gpu: 0, other: 0, ui: 0 };
      const pss: Peaks = { total: 0, page: 0, gpu: 0, other: 0, ui: 0 };
      procs.forEach((p, i) => {
        rssPeak[i] = Math.max(rssPeak[i]!, hwm[i]!);
        const grew = Math.max(0, rssPeak[i]! - rssBefore[i]!);
        const grewPss = Math.max(0, pssPeak[i]! - pssBefore[i]!);
        rss[role(p)] += grew;
        pss[role(p)] += grewPss;
        if (!p.ui) {
          rss.total += grew;
          pss.total += grewPss;
        }
      });
      return { rss, pss, browserPss: Math.max(0, pssPeak[procs.length]! - pssBefore[procs.length]!) };
    };
    let report: { ms: number; tensors: number; backendBytes: number | null };
    let forward: { finite: boolean; leaked: number };
    let load: Both;
    try {
      report = await page.evaluate(`globalThis.__load(${JSON.stringify(`${origin}/model`)})`);
      load = await peaks();
      forward = await page.evaluate('globalThis.__forward()');
    } finally {
      sampling = false;
      await sampler;
    }
    const withForward = await peaks();
    const problems = [...page.errors, ...served];
    if (forward.leaked !== 0) problems.push(`${forward.leaked} storage buffer(s) outlived the disposed model`);
    if (problems.length > 0) throw new Error(`web-load page on ${backend}: ${problems.join('; ')}`);
    return {
      ...report,
      finite: forward.finite,
      peakHeap: peakHeap - heapBefore,
      load,
      withForward,
      hasBackingStore: usage.backingStorageSize !== undefined,
    };
  } finally {
    await page.close();
  }
}

const suite: BenchSuite = {
  name: 'web-load',
  async run({ quick }) {
    const skip = chromiumSkipReason();
    if (skip) throw new SuiteSkipped(skip);
    const size = quick ? QUICK : FULL;
    const dir = await mkdtemp(join(tmpdir(), 'dorajs-bench-web-load-'));
    const rows: BenchResult[] = [];
    try {
      const { params, bytes } = await writeCheckpoint(dir, size, 'BF16');
      const served: string[] = [];
      const server = await site(dir, await pageScript(), served);
      try {
        for (const backend of ['cpu', 'webgpu'] as const) {
          const browser = await launchChromium({ webgpu: backend === 'webgpu' });
          try {
            const r = await measure(browser, server.origin, backend, served);
            if (!r.finite) throw new Error(`web-load on ${backend}: the forward after loading gave non-finite logits`);
            const ratio = r.load.pss.total / bytes;
            const split = (p: Peaks) => `page renderer +${mib(p.page)}, GPU process +${mib(p.gpu)}, other renderers +${mib(p.other)}`;
            const both = (b: Both) =>
              `+${mib(b.pss.total)} PSS = ${(b.pss.total / bytes).toFixed(2)}× (${split(b.pss)}); ` +
              `RSS +${mib(b.rss.total)} = ${(b.rss.total / bytes).toFixed(2)}× (${split(b.rss)}); ` +
              `browser process, not counted: PSS +${mib(b.browserPss)}`;
            rows.push({
              name: 'load llama bf16 in a page',
              backend: backend === 'cpu' ? 'cpu (chromium, wasm, 1 thread)' : 'webgpu (chromium, swiftshader)',
              shape: `${(params / 1e6).toFixed(1)}M params (${size.layers}L h${size.hidden} v${size.vocab}), ${mib(bytes)} of weights`,
              medianMs: r.ms,
              threads: 1,
              notes:
                `loading: peak (renderers + GPU process) ${both(r.load)}; goal PSS ≤ ${GOAL}× the weights: ` +
                `${ratio <= GOAL ? 'met' : 'MISSED'} (PSS: a page several processes map counts once in the sum; ` +
                `RSS counts the shared memory carrying the renderer's writes to the GPU process in both); ` +
                `with the first forward: ${both(r.withForward)}; ` +
                `Chrome's UI renderer, not counted: RSS +${mib(r.withForward.rss.ui)}, PSS +${mib(r.withForward.pss.ui)}; ` +
                `peak +${mib(r.peakHeap)} JS heap${r.hasBackingStore ? ' + ArrayBuffers/wasm' : ''} (CDP); ${r.tensors} tensors` +
                (r.backendBytes !== null ? `; backend holds ${mib(r.backendBytes)}` : ''),
            });
          } finally {
            await browser.close();
          }
        }
      } finally {
        await server.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return rows;
  },
};
export default suite;
