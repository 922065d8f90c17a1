/**
 * Every library package's default entry, bundled as a web app would (esbuild --platform=browser, and Vite)
 * from the built packages: it must resolve with no flags, name no `node:` module, refer to no Node global,
 * and load in Chromium with every export present, no console error, no failed request and no request for a
 * `node:` module. The CLI and the conformance suite are Node-only by declaration: a browser bundle of them
 * must fail to resolve instead of half-working.
 */
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Bundle,
  type Chunk,
  type EntryPart,
  esbuildBundle,
  esbuildChunks,
  initialFiles,
  LIBRARY_PACKAGES,
  NODE_ONLY_PACKAGES,
  nodeGlobalsIn,
  nodeSpecifiersIn,
  viteBundle,
  viteChunks,
} from '../src/bundle.js';
import { chromiumSkipReason, launchChromium, openPage, pageResult, serve } from '../src/chromium.js';

const skipBrowser = chromiumSkipReason();
if (skipBrowser) console.warn(skipBrowser);

const bundles = new Map<string, Bundle>();
const key = (tool: string, pkg: string) => `${tool}/${pkg.replace('@dorajs/', '')}.js`;

describe.each(LIBRARY_PACKAGES)('%s', (pkg) => {
  it('bundles with esbuild --platform=browser: no node: specifier', async () => {
    const b = await esbuildBundle([pkg]);
    expect(nodeSpecifiersIn(b.code)).toEqual([]);
    bundles.set(key('esbuild', pkg), b);
  });

  it('bundles with Vite: no node: specifier', async () => {
    const b = await viteBundle([pkg]);
    expect(nodeSpecifiersIn(b.code)).toEqual([]);
    bundles.set(key('vite', pkg), b);
  });

  it("dorajs's own code refers to no Node global", async () => {
    expect(await nodeGlobalsIn([pkg])).toEqual([]);
  });
});

describe('the checks can fail', () => {
  const planted = fileURLToPath(new URL('./fixtures/node-leak.js', import.meta.url));
  it('a module naming node:fs and process is caught', async () => {
    await expect(esbuildBundle([planted])).rejects.toThrow(/node:fs/);
    expect(await nodeGlobalsIn([planted])).toEqual(['process', 'Buffer']);
  });
});

/** A page that creates its CPU backend the recommended way: `await loadCpuBackend()`. */
const CPU_ASYNC: EntryPart[] = [{ from: '@dorajs/backend-cpu', names: ['loadCpuBackend'] }];
/** Strings that only the kernel-module emitter holds (task names it writes into the module's export section). */
const EMITTER_MARKERS = ['gemm_pack_task', 'map_dora_compose'];
const hasEmitter = (c: Chunk) => EMITTER_MARKERS.every((m) => c.code.includes(m));
const TOOLS = [
  ['esbuild', esbuildChunks],
  ['vite', viteChunks],
] as const;
/** Code-split builds of CPU_ASYNC, served to Chromium below. */
const splits = new Map<string, Chunk[]>();
/** Where a chunk is served: Vite's preload helper asks for its chunks from the site's root (base '/'). */
const splitUrl = (tool: string, file: string) => (tool === 'vite' ? file : `split/${tool}/${file}`);

describe('@dorajs/backend-cpu loadCpuBackend: the kernel emitter is a lazy chunk', () => {
  it.each(TOOLS)('%s: the initial download holds no emitter, a lazy chunk holds it', async (tool, chunks) => {
    const cs = await chunks(CPU_ASYNC);
    const initial = initialFiles(cs);
    expect(cs.filter((c) => initial.has(c.file) && EMITTER_MARKERS.some((m) => c.code.includes(m))).map((c) => c.file)).toEqual([]);
    expect(cs.filter((c) => !initial.has(c.file) && hasEmitter(c)).length, 'a lazy chunk with the emitter').toBe(1);
    for (const c of cs) expect(nodeSpecifiersIn(c.code), c.file).toEqual([]);
    splits.set(tool, cs);
  });

  it.each(TOOLS)('%s: the check can fail (createCpuBackend puts the emitter in the initial download)', async (_tool, chunks) => {
    const cs = await chunks([{ from: '@dorajs/backend-cpu', names: ['createCpuBackend'] }]);
    const initial = initialFiles(cs);
    expect(cs.some((c) => initial.has(c.file) && hasEmitter(c))).toBe(true);
  });
});

describe.each(NODE_ONLY_PACKAGES)('%s (Node-only by declaration)', (pkg) => {
  it('does not resolve for a browser bundle', async () => {
    await expect(esbuildBundle([pkg])).rejects.toThrow(/Could not resolve|No matching export|condition/);
  });
});

describe.skipIf(!!skipBrowser)('in Chromium', () => {
  let browser: Browser;
  let site: Awaited<ReturnType<typeof serve>>;
  const served: string[] = [];
  beforeAll(async () => {
    site = await serve((req, res) => {
      const path = (req.url ?? '/').slice(1);
      if (path === '' || path === 'index.html') {
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><meta charset="utf-8"><title>bundles</title>');
      }
      served.push(path);
      const code =
        bundles.get(path)?.code ?? [...splits].flatMap(([tool, cs]) => cs.filter((c) => splitUrl(tool, c.file) === path))[0]?.code;
      if (code === undefined) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' }).end(code);
    });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it.each(LIBRARY_PACKAGES)('%s: both bundles load with every export', async (pkg) => {
    const expected = Object.keys(await import(pkg)).sort();
    for (const tool of ['esbuild', 'vite']) {
      const path = key(tool, pkg);
      expect(bundles.has(path), `${path} was not built`).toBe(true);
      const opened = await openPage(browser, `${site.origin}/index.html`);
      try {
        // A string, not a function: vitest would rewrite a function's import() for Node.
        await opened.page.evaluate(`import('/${path}').then(
          (m) => { globalThis.__result = { exports: Object.keys(m.m0).sort() }; },
          (e) => { globalThis.__result = { error: String(e) }; })`);
        const result = await pageResult<{ exports?: string[]; error?: string }>(opened.page, 30_000);
        expect(result.error, `${path}`).toBeUndefined();
        expect(result.exports, path).toEqual(expected);
        expect({ errors: opened.errors, failedRequests: opened.failedRequests, nodeRequests: opened.nodeRequests }, path).toEqual({
          errors: [],
          failedRequests: [],
          nodeRequests: [],
        });
      } finally {
        await opened.close();
      }
    }
  });

  it.each(TOOLS)('%s: await loadCpuBackend() fetches the emitter chunk and computes with the wasm kernels', async (tool) => {
    const cs = splits.get(tool);
    expect(cs, `${tool} split build was not made`).toBeDefined();
    const entry = cs!.find((c) => c.entry)!.file;
    const lazy = cs!.filter((c) => !initialFiles(cs!).has(c.file) && hasEmitter(c)).map((c) => splitUrl(tool, c.file));
    const opened = await openPage(browser, `${site.origin}/index.html`);
    try {
      served.length = 0;
      await opened.page.evaluate(`(async () => {
        const { loadCpuBackend } = await import('/${splitUrl(tool, entry)}');
        globalThis.__before = performance.getEntriesByType('resource').map((e) => e.name);
        const b = await loadCpuBackend({ threads: 2 });
        const a = { data: b.upload(new Float32Array([1, 2, 3, 4]), [2, 2], 'float32'), shape: [2, 2], dtype: 'float32' };
        const w = { data: b.upload(new Float32Array([5, 6, 7, 8]), [2, 2], 'float32'), shape: [2, 2], dtype: 'float32' };
        const y = b.matmul(a, w, {}, [2, 2]);
        const values = Array.from(await b.download({ data: y, shape: [2, 2], dtype: 'float32' }));
        return { kernels: b.kernels, threads: b.threads, description: b.description, values };
      })().then((r) => { globalThis.__result = r; }, (e) => { globalThis.__result = { error: String(e) }; })`);
      const result = await pageResult<{ kernels?: string; threads?: number; description?: string; values?: number[]; error?: string }>(
        opened.page,
        30_000,
      );
      expect(result.error).toBeUndefined();
      // This server sends no COOP/COEP headers: one thread, as createCpuBackend gives on such a page.
      expect(result).toEqual({
        kernels: 'wasm',
        threads: 1,
        description: expect.stringMatching(/^wasm SIMD( \+ FMA)?, 1 thread: page is not cross-origin isolated$/),
        values: [19, 22, 43, 50],
      });
      const before = (await opened.page.evaluate('globalThis.__before')) as string[];
      for (const file of lazy) {
        expect(
          before.some((u) => u.endsWith(`/${file}`)),
          `${file} fetched before loadCpuBackend()`,
        ).toBe(false);
        expect(served, `${file} fetched by loadCpuBackend()`).toContain(file);
      }
      expect({ errors: opened.errors, failedRequests: opened.failedRequests, nodeRequests: opened.nodeRequests }).toEqual({
        errors: [],
        failedRequests: [],
        nodeRequests: [],
      });
    } finally {
      await opened.close();
    }
  });
});
