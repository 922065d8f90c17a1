/**
 * Loading a model into a web page: a random Llama of ~100M parameters (~10M in quick runs), BF16 on disk,
 * served on loopback with HTTP Range requests and loaded in Debian's Chromium by `loadModel(url, { keepWidth })`
 * — on the CPU backend (wasm kernels, one thread, weights in the wasm heap) and on WebGPU
 * (SwiftShader). Peak memory above the level before loading, two ways, both through the DevTools protocol:
 *   - `Runtime.getHeapUsage` sampled every 20 ms: JS heap + ArrayBuffer backing stores (the wasm heap
 *     included) — what the page itself allocates;
 *   - the high-water RSS of the renderer and GPU processes (their pids from `SystemInfo.getProcessInfo`, peaks
 *     reset through /proc/<pid>/clear_refs, read from VmHWM): everything, SwiftShader's GPU buffers included.
 * Goal: the RSS peak ≤ 1.2× the weights' bytes.
 */
import { open, readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumSkipReason, ISOLATION_HEADERS, launchChromium, openPage, serve } from '@dorajs/web-tests/chromium';
import { build } from 'esbuild';
import type { Browser, CDPSession } from 'playwright-core';
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
async function site(dir: string, script: string) {
  const html = '<!doctype html><meta charset="utf-8"><title>web-load</title><script type="module" src="/page.js"></script>';
  return serve(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value!);
    if (path === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    if (path === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    const file = /^\/model\/([\w.-]+)$/.exec(path)?.[1];
    const handle = file ? await open(join(dir, file)).catch(() => null) : null;
    if (!handle) return void res.writeHead(404).end();
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

async function processIds(browser: Browser): Promise<number[]> {
  const session = await browser.newBrowserCDPSession();
  const { processInfo } = (await session.send('SystemInfo.getProcessInfo')) as { processInfo: { type: string; id: number }[] };
  await session.detach();
  return processInfo.filter((p) => p.type === 'renderer' || p.type === 'GPU').map((p) => p.id);
}

async function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

async function heapBytes(cdp: CDPSession): Promise<number> {
  const h = (await cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
  return h.usedSize + (h.backingStorageSize ?? 0);
}

interface LoadResult {
  ms: number;
  tensors: number;
  backendBytes: number | null;
  finite: boolean;
  peakHeap: number;
  peakRss: number;
  hasBackingStore: boolean;
}

async function measure(browser: Browser, origin: string, backend: 'cpu' | 'webgpu'): Promise<LoadResult> {
  const opened = await openPage(browser, `${origin}/`);
  try {
    await opened.page.waitForFunction(() => (globalThis as { __ready?: boolean }).__ready === true, null, { timeout: 60_000 });
    await opened.page.evaluate((which) => (globalThis as unknown as { __init: (b: string) => Promise<string> }).__init(which), backend);
    const cdp = await opened.context.newCDPSession(opened.page);
    await cdp.send('HeapProfiler.collectGarbage');
    const usage = (await cdp.send('Runtime.getHeapUsage')) as { backingStorageSize?: number };
    const pids = await processIds(browser);
    for (const pid of pids) await import('node:fs/promises').then((fs) => fs.writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => {}));
    const rssBefore = await Promise.all(pids.map((pid) => statusKb(pid, 'VmRSS')));
    const heapBefore = await heapBytes(cdp);
    let peakHeap = heapBefore;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakHeap = Math.max(peakHeap, await heapBytes(cdp).catch(() => 0));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const report = (await opened.page.evaluate(
      (url) => (globalThis as unknown as { __load: (u: string) => Promise<unknown> }).__load(url),
      `${origin}/model`,
    )) as Omit<LoadResult, 'peakHeap' | 'peakRss' | 'hasBackingStore'>;
    sampling = false;
    await sampler;
    const hwm = await Promise.all(pids.map((pid) => statusKb(pid, 'VmHWM')));
    const peakRss = hwm.reduce((sum, h, i) => sum + Math.max(0, h - rssBefore[i]!), 0);
    const problems = [...opened.errors, ...opened.failedRequests.filter((r) => !r.includes('/model/') || !r.includes('404'))];
    if (problems.length > 0) throw new Error(`web-load page on ${backend}: ${problems.join('; ')}`);
    return { ...report, peakHeap: peakHeap - heapBefore, peakRss, hasBackingStore: usage.backingStorageSize !== undefined };
  } finally {
    await opened.close();
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
      const server = await site(dir, await pageScript());
      try {
        for (const backend of ['cpu', 'webgpu'] as const) {
          const browser = await launchChromium({ webgpu: backend === 'webgpu' });
          try {
            const r = await measure(browser, server.origin, backend);
            if (!r.finite) throw new Error(`web-load on ${backend}: the forward after loading gave non-finite logits`);
            const ratio = r.peakRss / bytes;
            rows.push({
              name: 'load llama bf16 in a page',
              backend: backend === 'cpu' ? 'cpu (chromium, wasm, 1 thread)' : 'webgpu (chromium, swiftshader)',
              shape: `${(params / 1e6).toFixed(1)}M params (${size.layers}L h${size.hidden} v${size.vocab}), ${mib(bytes)} of weights`,
              medianMs: r.ms,
              threads: 1,
              notes:
                `peak +${mib(r.peakRss)} RSS (renderer + GPU process) = ${ratio.toFixed(2)}× the weights (goal ≤ ${GOAL}×: ${ratio <= GOAL ? 'met' : 'MISSED'}); ` +
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
