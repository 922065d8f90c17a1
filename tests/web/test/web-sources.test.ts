/**
 * The web loaders in Chromium: a model and a DoRA adapter from URLs, from folders given to webkitdirectory
 * inputs (what a drop or a folder picker yields; a picker itself cannot be automated), and from OPFS through
 * the root directory handle — with the adapter saved back into OPFS and reloaded. Every page's logits must
 * equal Node's from the folders on disk (≤ 1e-5, both on the cpu backend), with no console error, no failed
 * request and no request for a node: module; bad sources give the same typed one-line errors as in Node.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad, setDefaultBackend, tensor, tidy } from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { loadModel } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';
import { relativeError } from '@dorajs/backend-conformance';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumSkipReason, launchChromium, type OpenedPage, openPage, serve } from '../src/chromium.js';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/peft/llama/', import.meta.url));
const FOLDERS: Record<string, string> = { llama: join(FIXTURE, 'base'), 'llama-adapter': join(FIXTURE, 'adapter') };
const skip = chromiumSkipReason();
if (skip) console.warn(skip);

describe.skipIf(!!skip)('loaders in Chromium', () => {
  let browser: Browser;
  let site: Awaited<ReturnType<typeof serve>>;
  let expected: number[];
  let opened: OpenedPage;

  beforeAll(async () => {
    const backend = createCpuBackend();
    setDefaultBackend(backend);
    const { model } = await loadModel(FOLDERS.llama!, { backend });
    const peft = await PeftModel.fromPretrained(model, FOLDERS['llama-adapter']!);
    const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array([1, 5, 9, 3]), [1, 4], { dtype: 'int32' }))));
    expected = Array.from((await out.data()) as Float32Array);
    out.dispose();
    model.dispose();

    const page = await build({
      entryPoints: [fileURLToPath(new URL('./browser/sources-page.ts', import.meta.url))],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
    });
    const script = page.outputFiles[0]!.text;
    const html =
      '<!doctype html><meta charset="utf-8"><title>sources</title><input id="model" type="file" webkitdirectory><input id="adapter" type="file" webkitdirectory><script type="module" src="/page.js"></script>';
    site = await serve((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      if (path === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
      if (path === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
      const [, folder = '', file = ''] = path.split('/');
      const dir = FOLDERS[folder];
      if (!dir || !/^[\w.-]+$/.test(file)) return void res.writeHead(404).end();
      let body: Buffer;
      try {
        body = readFileSync(join(dir, file));
      } catch {
        return void res.writeHead(404).end();
      }
      res.writeHead(200, { 'content-length': body.byteLength }).end(body);
    });
    browser = await launchChromium();
    opened = await openPage(browser, `${site.origin}/`, { expectedFailures: ['/nothing/'] });
    await opened.page.waitForFunction(() => (globalThis as { __ready?: boolean }).__ready === true, null, { timeout: 30_000 });
  });
  afterAll(async () => {
    await opened?.close();
    await browser?.close();
    await site?.close();
  });

  const run = <T>(call: string): Promise<T> => opened.page.evaluate(call) as Promise<T>;

  it('from URLs (Range or not, the server decides)', async () => {
    expect(relativeError(await run<number[]>(`dora.url(${JSON.stringify(site.origin)})`), expected)).toBeLessThanOrEqual(1e-5);
  });

  it('from folders given to webkitdirectory inputs', async () => {
    await opened.page.setInputFiles('#model', FOLDERS.llama!);
    await opened.page.setInputFiles('#adapter', FOLDERS['llama-adapter']!);
    expect(relativeError(await run<number[]>('dora.dropped()'), expected)).toBeLessThanOrEqual(1e-5);
  });

  it('from OPFS directory handles, and savePretrained into OPFS', async () => {
    const { values, again } = await run<{ values: number[]; again: number[] }>(`dora.opfs(${JSON.stringify(site.origin)})`);
    expect(relativeError(values, expected)).toBeLessThanOrEqual(1e-5);
    expect(again).toEqual(values);
  });

  it('bad sources: typed one-line errors naming the file', async () => {
    const errors = await run<Record<string, string>>(`dora.errors(${JSON.stringify(site.origin)})`);
    expect(errors.missing).toBe(`ModelFolderError: ${site.origin}/nothing/config.json: cannot read config.json: no such file`);
    expect(errors.noConfig).toBe('ModelFolderError: empty/config.json: cannot read config.json: no such file');
    expect(errors.path).toMatch(/^ModelFolderError: .*config\.json: cannot read config\.json: .*need Node/);
  });

  it('the page stayed clean', () => {
    expect({ errors: opened.errors, failedRequests: opened.failedRequests, nodeRequests: opened.nodeRequests }).toEqual({
      errors: [],
      failedRequests: [],
      nodeRequests: [],
    });
  });
});
