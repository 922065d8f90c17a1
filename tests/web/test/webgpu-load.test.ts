/**
 * loadModel on WebGPU in Chromium (SwiftShader): the PEFT fixture's Llama from a loopback server that honours
 * Range requests, as float32 and as a bf16 twin (kept 2 bytes wide, and widened), streamed in 998-byte pieces
 * (the first 4 KiB read for the header, then a Range request per piece; bf16 pieces of 499
 * elements: writes that are not whole words) into 4 KiB buffers, so the larger weights
 * split over several. Every parameter on the GPU must equal the checkpoint bit for bit, the logits must match
 * the CPU backend's in Node, no buffer may outlive the model, and a body cut short must be a typed error that
 * frees what was uploaded.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { relativeError } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { f32ToBf16, type HostTensor, noGrad, parseSafetensors, serializeSafetensors, tensor, tidy } from '@dorajs/core';
import { loadModel } from '@dorajs/models';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumSkipReason, launchChromium, type OpenedPage, openPage, serve } from '../src/chromium.js';

const BASE = fileURLToPath(new URL('../../../fixtures/peft/llama/base/', import.meta.url));
const IDS = [1, 5, 9, 3];
const skip = chromiumSkipReason();
if (skip) console.warn(skip);

/** The fixture's weights rounded to bf16 (round to nearest even), stored BF16. */
function bf16Checkpoint(): Uint8Array {
  const { tensors, metadata } = parseSafetensors(readFileSync(join(BASE, 'model.safetensors')));
  const out = new Map<string, HostTensor>();
  for (const [key, t] of tensors)
    out.set(key, { dtype: 'BF16', shape: t.shape, data: Uint16Array.from(t.data as Float32Array, f32ToBf16) });
  return serializeSafetensors(out, metadata);
}

async function cpuLogits(files: Record<string, Uint8Array>): Promise<number[]> {
  const site = await serve((req, res) => {
    const body = files[new URL(req.url ?? '/', 'http://x').pathname.slice(1)];
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.byteLength }).end(body);
  });
  try {
    const backend = createCpuBackend();
    const { model } = await loadModel(site.origin, { backend });
    const out = tidy(() => noGrad(() => model.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32', backend }))));
    const values = Array.from((await out.data()) as Float32Array);
    out.dispose();
    model.dispose();
    return values;
  } finally {
    await site.close();
  }
}

describe.skipIf(!!skip)('loadModel on WebGPU in Chromium', () => {
  const config = readFileSync(join(BASE, 'config.json'));
  const folders: Record<string, Record<string, Uint8Array>> = {
    f32: { 'config.json': config, 'model.safetensors': readFileSync(join(BASE, 'model.safetensors')) },
    bf16: { 'config.json': config, 'model.safetensors': bf16Checkpoint() },
  };
  folders.cut = folders.bf16!;
  let browser: Browser;
  let site: Awaited<ReturnType<typeof serve>>;
  let opened: OpenedPage;

  beforeAll(async () => {
    const page = await build({
      entryPoints: [fileURLToPath(new URL('./browser/webgpu-load-page.ts', import.meta.url))],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
    });
    const script = page.outputFiles[0]!.text;
    const html = '<!doctype html><meta charset="utf-8"><title>webgpu load</title><script type="module" src="/page.js"></script>';
    site = await serve((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
      if (path === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
      const [, folder = '', file = ''] = path.split('/');
      const body = folders[folder]?.[file];
      if (!body) return void res.writeHead(404).end();
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (!m) return void res.writeHead(200, { 'content-length': body.byteLength, 'accept-ranges': 'bytes' }).end(body);
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), body.byteLength - 1) : body.byteLength - 1;
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${body.byteLength}` });
      // `cut`: a tensor range past the first 6000 bytes stops half way.
      if (folder === 'cut' && file.endsWith('.safetensors') && start > 6000) {
        res.write(body.subarray(start, start + ((end - start + 1) >> 1)));
        return void setTimeout(() => res.destroy(), 20);
      }
      res.end(body.subarray(start, end + 1));
    });
    browser = await launchChromium({ webgpu: true });
    opened = await openPage(browser, `${site.origin}/`, { expectedFailures: ['/cut/model.safetensors'] });
    await opened.page.waitForFunction(() => (globalThis as { __ready?: boolean }).__ready === true, null, { timeout: 30_000 });
  });
  afterAll(async () => {
    await opened?.close();
    await browser?.close();
    await site?.close();
  });

  interface Loaded {
    params: Record<string, { dtype: string; same: boolean }>;
    logits: number[];
    leaked: number;
    waits: number;
    largestRequest: number;
  }
  const load = (folder: string, keepWidth: boolean): Promise<Loaded> =>
    opened.page.evaluate(`dora.load(${JSON.stringify(`${site.origin}/${folder}`)}, ${keepWidth})`) as Promise<Loaded>;

  it.each([
    ['f32', true, 'float32'],
    ['bf16', true, 'bfloat16'],
    ['bf16', false, 'float32'],
  ] as const)(
    '%s checkpoint, keepWidth %s: every weight bit for bit, logits as on the CPU, no buffer left',
    async (folder, keepWidth, linear) => {
      const r = await load(folder, keepWidth);
      const names = Object.keys(r.params);
      expect(names.length).toBe(21);
      expect(names.filter((n) => !r.params[n]!.same)).toEqual([]);
      expect(r.params['model.layers.0.mlp.gate_proj.weight']!.dtype).toBe(linear);
      expect(r.params['model.embed_tokens.weight']!.dtype).toBe(linear);
      expect(r.params['model.norm.weight']!.dtype).toBe('float32');
      expect(r.largestRequest).toBeLessThanOrEqual(4096);
      expect(r.waits).toBeGreaterThan(5);
      expect(r.leaked).toBe(0);
      expect(relativeError(r.logits, await cpuLogits(folders[folder]!))).toBeLessThanOrEqual(1e-4);
    },
  );

  it('a body cut short is a typed error naming the file, and frees what was uploaded', async () => {
    const r = (await opened.page.evaluate(`dora.failing(${JSON.stringify(`${site.origin}/cut`)})`)) as { error: string; leaked: number };
    expect(r.error).toMatch(/^SafetensorsError: /);
    expect(r.error).toContain(`${site.origin}/cut/model.safetensors`);
    expect(r.error.split('\n')).toHaveLength(1);
    expect(r.leaked).toBe(0);
  });

  it('the page stayed clean', () => {
    expect({ errors: opened.errors, nodeRequests: opened.nodeRequests }).toEqual({ errors: [], nodeRequests: [] });
  });
});
