/**
 * Debian's headless Chromium driven by playwright-core (no browser download), a loopback HTTP server for
 * the pages, and a page runner that collects what must stay empty: console errors, uncaught exceptions,
 * failed or 4xx/5xx requests, and any request for a `node:` module.
 */
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Cross-origin isolation: SharedArrayBuffer, so the cpu backend's wasm threads. */
export const ISOLATION_HEADERS: OutgoingHttpHeaders = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
};

/** Fails fast (in CI) or says why the browser tests are skipped (a machine without Chromium). */
export function chromiumSkipReason(): string {
  if (existsSync(CHROMIUM_PATH)) return '';
  if (process.env.CI === 'true') throw new Error(`CI requires Chromium at ${CHROMIUM_PATH} (apt-get install chromium)`);
  return `no Chromium at ${CHROMIUM_PATH}, skipping`;
}

export async function launchChromium(options: { webgpu?: boolean } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu-sandbox',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      ...(options.webgpu ? ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'] : []),
    ],
  });
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** A server on 127.0.0.1 (a secure context for WebGPU and OPFS) on a free port. */
export async function serve(handler: Handler): Promise<{ server: Server; origin: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    // The browser asks for a favicon on its own: no content, so no 404 in the console.
    if (req.url === '/favicon.ico') return void res.writeHead(204).end();
    Promise.resolve(handler(req, res)).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    origin,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a page did that a clean page never does. */
export interface PageProblems {
  readonly errors: string[];
  readonly failedRequests: string[];
  readonly nodeRequests: string[];
}

export interface OpenedPage extends PageProblems {
  readonly page: Page;
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/**
 * Opens `url` in a fresh context and starts collecting problems. `expectedStatus` lists URLs (substrings)
 * whose error status a test provokes on purpose (a 404 shard): those are not counted as failures.
 */
export async function openPage(browser: Browser, url: string, options: { expectedFailures?: readonly string[] } = {}): Promise<OpenedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  const failedRequests: string[] = [];
  const nodeRequests: string[] = [];
  const expected = (u: string) => (options.expectedFailures ?? []).some((s) => u.includes(s));
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('crash', () => errors.push('the page crashed'));
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected(m.text()) && !m.text().startsWith('Failed to load resource'))
      errors.push(`console.error: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (/(^|\/)node:/.test(decodeURIComponent(r.url()))) nodeRequests.push(r.url());
  });
  page.on('requestfailed', (r) => {
    const reason = r.failure()?.errorText ?? 'failed';
    // ERR_ABORTED is the page cancelling a body it no longer needs (a loader stops a streamed download).
    if (!expected(r.url()) && reason !== 'net::ERR_ABORTED') failedRequests.push(`${r.url()}: ${reason}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !expected(r.url())) failedRequests.push(`${r.url()}: HTTP ${r.status()}`);
  });
  await page.goto(url, { waitUntil: 'commit' });
  return { page, context, errors, failedRequests, nodeRequests, close: () => context.close() };
}

/** Waits for the page to set `globalThis.__result` and returns it. */
export async function pageResult<T>(page: Page, timeoutMs: number): Promise<T> {
  await page.waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, null, {
    timeout: timeoutMs,
    polling: 100,
  });
  return (await page.evaluate(() => (globalThis as unknown as { __result: unknown }).__result)) as T;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/**
 * A built site (Vite's dist/) on loopback with the cross-origin isolation headers `vite preview` sets,
 * plus extra folders under URL prefixes (`{ '/models/llama': dir }`) and files made by the test
 * (`{ '/models/llama/tokenizer.json': text }`). Only files under the roots are served; the rest is a 404.
 * `isolation: false` leaves the headers out (a static host that cannot set them).
 */
export async function serveStatic(
  root: string,
  extra: Readonly<Record<string, string>> = {},
  made: Readonly<Record<string, string | Uint8Array>> = {},
  options: { readonly isolation?: boolean } = {},
) {
  const ISOLATION = options.isolation === false ? {} : ISOLATION_HEADERS;
  const { readFile } = await import('node:fs/promises');
  const { extname, join, resolve, sep } = await import('node:path');
  return serve(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const text = made[path];
    if (text !== undefined) {
      const body = typeof text === 'string' ? Buffer.from(text) : text;
      return void res
        .writeHead(200, {
          ...ISOLATION,
          'content-type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
          'content-length': body.byteLength,
        })
        .end(req.method === 'HEAD' ? undefined : body);
    }
    let dir = root;
    for (const [prefix, folder] of Object.entries(extra)) {
      if (path.startsWith(`${prefix}/`)) {
        dir = folder;
        path = path.slice(prefix.length);
      }
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = join(resolve(dir), path);
    if (!file.startsWith(resolve(dir) + sep)) return void res.writeHead(404, ISOLATION).end();
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      return void res.writeHead(404, ISOLATION).end();
    }
    res
      .writeHead(200, {
        ...ISOLATION,
        'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
        'content-length': body.byteLength,
      })
      .end(req.method === 'HEAD' ? undefined : body);
  });
}
