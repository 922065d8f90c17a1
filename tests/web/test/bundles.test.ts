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
  esbuildBundle,
  LIBRARY_PACKAGES,
  NODE_ONLY_PACKAGES,
  nodeGlobalsIn,
  nodeSpecifiersIn,
  viteBundle,
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

describe.each(NODE_ONLY_PACKAGES)('%s (Node-only by declaration)', (pkg) => {
  it('does not resolve for a browser bundle', async () => {
    await expect(esbuildBundle([pkg])).rejects.toThrow(/Could not resolve|No matching export|condition/);
  });
});

describe.skipIf(!!skipBrowser)('in Chromium', () => {
  let browser: Browser;
  let site: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    site = await serve((req, res) => {
      const path = (req.url ?? '/').slice(1);
      if (path === '' || path === 'index.html') {
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><meta charset="utf-8"><title>bundles</title>');
      }
      const b = bundles.get(path);
      if (!b) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' }).end(b.code);
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
});
