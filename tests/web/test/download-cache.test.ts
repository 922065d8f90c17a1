/**
 * The download cache of URL and Hub sources: a loopback server serves the PEFT fixtures' Llama and DoRA
 * adapter (with Range, without Range, or cutting a body short on demand) and counts requests. In Node
 * (`directoryCache`, and `cache: 'default'` under $DORA_CACHE) and in Chromium (Cache API and OPFS): the
 * first load downloads, the second makes no request and gives the same logits as the folders on disk; a
 * truncated download never enters the cache (no entry, no leftover part file), and the next load downloads
 * the file again.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { relativeError } from '@dorajs/backend-conformance';
import { type DownloadCache, directoryCache, noGrad, setDefaultBackend, tensor, tidy } from '@dorajs/core';
import { loadModel } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumSkipReason, launchChromium, type OpenedPage, openPage, serve } from '../src/chromium.js';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/peft/llama/', import.meta.url));
const FOLDERS: Record<string, string> = { llama: join(FIXTURE, 'base'), 'llama-adapter': join(FIXTURE, 'adapter') };
const IDS = [1, 5, 9, 3];
const backend = createCpuBackend();
setDefaultBackend(backend);

/** Requests per path, and whether /flaky/ cuts tensor reads short (Content-Length promises more). */
const state = { requests: [] as string[], truncate: false };
const count = (pathPart: string) => state.requests.filter((p) => p.includes(pathPart)).length;

function handler(req: IncomingMessage, res: ServerResponse): void {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  if (path === '/' || path === '/page.js') return void res.writeHead(404).end(); // served by the page handler
  state.requests.push(path);
  const [, mode = '', folder = '', file = ''] = path.split('/');
  const dir = FOLDERS[folder];
  let body: Buffer;
  try {
    if (!dir || !/^[\w.-]+$/.test(file)) throw new Error('no');
    body = readFileSync(join(dir, file));
  } catch {
    return void res.writeHead(404).end();
  }
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (!m || mode === 'norange') return void res.writeHead(200, { 'content-length': body.byteLength }).end(body);
  const start = Number(m[1]);
  const end = Math.min(Number(m[2]), body.byteLength - 1);
  const part = body.subarray(start, end + 1);
  res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.byteLength}`, 'content-length': part.byteLength });
  if (mode === 'flaky' && state.truncate && start > 0 && file.endsWith('.safetensors')) {
    res.write(part.subarray(0, part.byteLength >> 1));
    return void setTimeout(() => res.destroy(), 5);
  }
  res.end(part);
}

let expected: number[];
async function logitsFrom(model: string, adapter: string, cache: DownloadCache | 'default'): Promise<number[]> {
  const { model: base } = await loadModel(model, { backend, cache, probeBytes: 1024 });
  const peft = await PeftModel.fromPretrained(base, adapter, { cache, probeBytes: 1024 });
  const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32' }))));
  const values = Array.from((await out.data()) as Float32Array);
  out.dispose();
  base.dispose();
  return values;
}

let site: Awaited<ReturnType<typeof serve>>;
let pageScript = '';
beforeAll(async () => {
  const { model } = await loadModel(FOLDERS.llama!, { backend });
  const peft = await PeftModel.fromPretrained(model, FOLDERS['llama-adapter']!);
  const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32' }))));
  expected = Array.from((await out.data()) as Float32Array);
  out.dispose();
  model.dispose();
  site = await serve((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/')
      return void res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<!doctype html><meta charset="utf-8"><title>cache</title><script type="module" src="/page.js"></script>');
    if (path === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(pageScript);
    handler(req, res);
  });
});
afterAll(async () => {
  await site?.close();
});

describe('download cache in Node (directoryCache)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'dora-cache-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  for (const mode of ['range', 'norange'] as const) {
    it(`${mode}: the second load makes no request and gives the same logits`, async () => {
      const dir = tempDir();
      const cache = directoryCache(dir);
      const [model, adapter] = [`${site.origin}/${mode}/llama`, `${site.origin}/${mode}/llama-adapter`];
      state.requests = [];
      expect(relativeError(await logitsFrom(model, adapter, cache), expected)).toBeLessThanOrEqual(1e-5);
      expect(count('model.safetensors')).toBeGreaterThan(0);
      expect(count('adapter_model.safetensors')).toBeGreaterThan(0);
      // config.json, model.safetensors, adapter_config.json, adapter_model.safetensors (a 404 is never kept).
      expect(readdirSync(dir).filter((f) => !f.endsWith('.part'))).toHaveLength(4);
      expect(readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
      state.requests = [];
      expect(await logitsFrom(model, adapter, cache)).toEqual(await logitsFrom(model, adapter, cache));
      expect(state.requests).toEqual([]);
    });
  }

  it('a truncated download never enters the cache; the next load downloads it again', async () => {
    const dir = tempDir();
    const cache = directoryCache(dir);
    const [model, adapter] = [`${site.origin}/flaky/llama`, `${site.origin}/flaky/llama-adapter`];
    state.truncate = true;
    try {
      await expect(logitsFrom(model, adapter, cache)).rejects.toThrow(/flaky\/llama\/model\.safetensors.*(truncated|failed)/);
    } finally {
      state.truncate = false;
    }
    expect(await cache.get(`${model}/model.safetensors`)).toBeNull();
    expect(await cache.get(`${model}/config.json`)).not.toBeNull(); // complete files stay
    expect(readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
    state.requests = [];
    expect(relativeError(await logitsFrom(model, adapter, cache), expected)).toBeLessThanOrEqual(1e-5);
    expect(count('/flaky/llama/model.safetensors')).toBeGreaterThan(0);
    expect(count('/flaky/llama/config.json')).toBe(0);
    state.requests = [];
    await logitsFrom(model, adapter, cache);
    expect(state.requests).toEqual([]);
  });

  it("cache: 'default' is $DORA_CACHE in Node", async () => {
    const dir = tempDir();
    const before = process.env.DORA_CACHE;
    process.env.DORA_CACHE = dir;
    try {
      const [model, adapter] = [`${site.origin}/range/llama`, `${site.origin}/range/llama-adapter`];
      await logitsFrom(model, adapter, 'default');
      expect(readdirSync(dir)).toHaveLength(4);
      state.requests = [];
      await logitsFrom(model, adapter, 'default');
      expect(state.requests).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.DORA_CACHE;
      else process.env.DORA_CACHE = before;
    }
  });
});

const skip = chromiumSkipReason();
if (skip) console.warn(skip);

describe.skipIf(!!skip)('download cache in Chromium (Cache API, OPFS)', () => {
  let browser: Browser;
  let opened: OpenedPage;
  beforeAll(async () => {
    const page = await build({
      entryPoints: [fileURLToPath(new URL('./browser/cache-page.ts', import.meta.url))],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
    });
    pageScript = page.outputFiles[0]!.text;
    browser = await launchChromium();
    opened = await openPage(browser, `${site.origin}/`, { expectedFailures: ['/flaky/'] });
    await opened.page.waitForFunction(() => (globalThis as { __ready?: boolean }).__ready === true, null, { timeout: 30_000 });
  });
  afterAll(async () => {
    await opened?.close();
    await browser?.close();
  });
  const run = <T>(call: string): Promise<T> => opened.page.evaluate(call) as Promise<T>;

  for (const kind of ['cache-api', 'opfs'] as const) {
    it(`${kind}: the second load makes no request; a truncated download is not kept`, async () => {
      const base = kind === 'opfs' ? 'norange' : 'range';
      const [m, a] = [`${site.origin}/${base}/llama`, `${site.origin}/${base}/llama-adapter`];
      state.requests = [];
      const first = await run<number[] | string>(`dora.load(${JSON.stringify(m)}, ${JSON.stringify(a)}, '${kind}')`);
      expect(typeof first === 'string' ? first : relativeError(first, expected)).toBeLessThanOrEqual(1e-5);
      expect(count('model.safetensors')).toBeGreaterThan(0);
      state.requests = [];
      expect(await run(`dora.load(${JSON.stringify(m)}, ${JSON.stringify(a)}, '${kind}')`)).toEqual(first);
      expect(state.requests).toEqual([]);

      const [fm, fa] = [`${site.origin}/flaky/llama`, `${site.origin}/flaky/llama-adapter`];
      state.truncate = true;
      let failed: number[] | string;
      try {
        failed = await run<number[] | string>(`dora.load(${JSON.stringify(fm)}, ${JSON.stringify(fa)}, '${kind}')`);
      } finally {
        state.truncate = false;
      }
      expect(failed).toMatch(/^(FileError|SafetensorsError): .*flaky\/llama\/model\.safetensors: .*(truncated|failed)/);
      const after = await run<{ cached: boolean; files: string[] }>(`dora.holds('${kind}', ${JSON.stringify(`${fm}/model.safetensors`)})`);
      expect(after.cached).toBe(false);
      expect(after.files.filter((f) => f.endsWith('.part'))).toEqual([]);
      state.requests = [];
      const again = await run<number[] | string>(`dora.load(${JSON.stringify(fm)}, ${JSON.stringify(fa)}, '${kind}')`);
      expect(typeof again === 'string' ? again : relativeError(again, expected)).toBeLessThanOrEqual(1e-5);
      expect(count('/flaky/llama/model.safetensors')).toBeGreaterThan(0);
      state.requests = [];
      await run(`dora.load(${JSON.stringify(fm)}, ${JSON.stringify(fa)}, '${kind}')`);
      expect(state.requests).toEqual([]);
    });
  }

  it('the page stayed clean', () => {
    expect({ errors: opened.errors, failedRequests: opened.failedRequests, nodeRequests: opened.nodeRequests }).toEqual({
      errors: [],
      failedRequests: [],
      nodeRequests: [],
    });
  });
});
