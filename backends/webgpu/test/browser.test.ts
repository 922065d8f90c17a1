/**
 * The backend in a real page: esbuild bundles test/browser/page.ts (no Dawn: it is only imported in Node),
 * a loopback HTTP server serves it (WebGPU needs a secure context), and Debian's headless Chromium with
 * --enable-unsafe-webgpu (SwiftShader) runs a DoRA Linear forward, checked against @dorajs/backend-cpu.
 * Without Chromium the test is skipped locally and fails in CI.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend, TensorInfo } from '@dorajs/core';
import { doraLinear } from './helpers/dora-linear.js';
import { randn } from './helpers/reference.js';
import { relativeError } from '@dorajs/backend-conformance';

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(chromiumPath);
if (!haveChromium && process.env.CI === 'true') throw new Error(`CI requires Chromium at ${chromiumPath} (apt-get install chromium)`);
const skipReason = haveChromium ? '' : `no Chromium at ${chromiumPath}, skipping`;
if (skipReason) console.warn(skipReason);

const [T, inn, out, r, scale] = [6, 40, 24, 4, 2];
const shapes: Record<string, number[]> = { x: [T, inn], x1: [1, inn], w: [out, inn], a: [r, inn], b: [out, r], m: [out], bias: [out] };
const values: Record<string, number[]> = {};
Object.entries(shapes).forEach(
  ([k, s], i) =>
    (values[k] = Array.from(
      randn(
        s.reduce((p, d) => p * d, 1),
        100 + i,
        k === 'm' ? 2 : 0.5,
      ),
    )),
);

async function cpuReference(input: 'x' | 'x1'): Promise<Float32Array> {
  const be = (await createCpuBackend()) as Backend;
  const up = (name: string): TensorInfo => ({
    data: be.upload(Float32Array.from(values[name]!), shapes[name]!, 'float32'),
    shape: shapes[name]!,
    dtype: 'float32',
  });
  const y = doraLinear(be, up(input), { w: up('w'), a: up('a'), b: up('b'), m: up('m'), bias: up('bias'), scale }, []);
  return (await be.download(y)) as Float32Array;
}

let server: Server | undefined;
let dir: string | undefined;
afterAll(() => {
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveChromium)(`webgpu in headless Chromium${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('runs a DoRA Linear forward on navigator.gpu that matches the CPU backend', async () => {
    dir = mkdtempSync(join(here, '..', 'node_modules', '.browser-test-'));
    await build({
      entryPoints: [join(here, 'browser', 'page.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      outfile: join(dir, 'page.js'),
      conditions: ['@dorajs/source'],
      logLevel: 'silent',
    });
    const bundle = readFileSync(join(dir, 'page.js'), 'utf8');
    expect(bundle).not.toMatch(/dawn\.node/);
    writeFileSync(
      join(dir, 'index.html'),
      `<!doctype html><meta charset="utf-8"><script>window.__input = ${JSON.stringify({ shapes, values, scale })};</script><script type="module" src="page.js"></script>`,
    );
    const files: Record<string, [string, string]> = { '/': ['index.html', 'text/html'], '/page.js': ['page.js', 'text/javascript'] };
    server = createServer((req, res) => {
      const f = files[req.url ?? ''];
      if (!f) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': f[1] }).end(readFileSync(join(dir!, f[0])));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;

    const browser = await chromium.launch({
      executablePath: chromiumPath,
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
        '--enable-unsafe-webgpu',
      ],
    });
    let passed = 0;
    let failed = 0;
    try {
      const page = await browser.newPage();
      const consoleErrors: string[] = [];
      page.on('pageerror', (e) => consoleErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(() => (globalThis as unknown as { __result?: unknown }).__result !== undefined, null, { timeout: 90_000 });
      const result = (await page.evaluate(() => (globalThis as unknown as { __result: unknown }).__result)) as {
        ok: boolean;
        adapter?: string;
        y?: number[];
        yDecode?: number[];
        fused?: number;
        subgroups?: boolean;
        adapterSubgroups?: boolean;
        shaderF16?: boolean;
        adapterShaderF16?: boolean;
        error?: string;
        gpuErrors: string[];
      };
      const checks: [string, boolean][] = [
        [`page ran (${result.error ?? result.adapter})`, result.ok],
        ['no WebGPU errors', result.gpuErrors.length === 0 && consoleErrors.length === 0],
      ];
      if (result.ok) {
        const err = relativeError(result.y!, await cpuReference('x'));
        checks.push([`matches the CPU backend (rel err ${err.toExponential(2)})`, err < 1e-4]);
        const errDecode = relativeError(result.yDecode!, await cpuReference('x1'));
        checks.push([
          `decode step (GEMV and norm in one pass) matches the CPU backend (rel err ${errDecode.toExponential(2)})`,
          errDecode < 1e-4,
        ]);
        checks.push([`the norm joined the GEMV (${result.fused} fused)`, result.fused === 1]);
        checks.push([
          `subgroup operations in use where the adapter has them (${result.subgroups})`,
          result.subgroups === result.adapterSubgroups,
        ]);
        checks.push([
          `float16 W bound as f16 where the adapter has shader-f16 (${result.shaderF16})`,
          result.shaderF16 === result.adapterShaderF16,
        ]);
        // SwiftShader has no shader-f16 (docs/narrow-weights.md): float16 W is read as packed u32 words here.
        if (/swiftshader/i.test(result.adapter ?? '')) checks.push(['SwiftShader lists no shader-f16', result.adapterShaderF16 === false]);
      }
      for (const [name, ok] of checks) {
        if (ok) passed++;
        else failed++;
        console.log(`${ok ? 'ok' : 'FAIL'} - browser: ${name}`);
      }
      expect(result.error).toBeUndefined();
      expect(result.gpuErrors).toEqual([]);
      expect(failed).toBe(0);
    } finally {
      console.log(`browser: ${passed} passed, ${failed} failed`);
      await browser.close();
    }
  });
});
