/**
 * The demo page (examples/web, as `pnpm build` leaves it in dist/) in Debian's Chromium, served on loopback
 * with the COOP/COEP headers `pnpm demo` sets:
 * - Train on the CPU backend (wasm threads): `dora finetune`'s whole job, DoRA and LoRA; DoRA must reach
 *   ≥ 90% held-out accuracy on digits 5–9, merged = unmerged accuracy, and the downloaded adapter, loaded in
 *   Node onto the same base, must give the page's logits (≤ 1e-5).
 * - Train on WebGPU (SwiftShader: slow, so a short DoRA run): the loss falls, and the downloaded adapter in
 *   Node (cpu) gives the page's logits (≤ 1e-4).
 * - Apply: the PEFT fixtures' Llama and DoRA adapter by URL; adapter on = merged = Node's PeftModel, off ≠ on.
 * Each page: no console error, no failed request, no request for a node: module; screenshots go to
 * tests/web/test-output/ (gitignored).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { relativeError } from '@dorajs/backend-conformance';
import { noGrad, setDefaultBackend, tensor, tidy } from '@dorajs/core';
import { loadModel } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';
import { collateDigits, FINETUNE_DIGITS, loadMnistBase, mnistSplit, readMnistDigits } from '@dorajs/train';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumSkipReason, launchChromium, type OpenedPage, openPage, serveStatic } from '../src/chromium.js';

const DIST = fileURLToPath(new URL('../../../examples/web/dist/', import.meta.url));
const OUTPUT = fileURLToPath(new URL('../test-output/', import.meta.url));
const LLAMA = fileURLToPath(new URL('../../../fixtures/peft/llama/', import.meta.url));
const MNIST_DIR = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
const skip = chromiumSkipReason();
if (skip) console.warn(skip);

interface PageRun {
  method: 'dora' | 'lora';
  steps: number;
  accuracy: number;
  mergedAccuracy: number;
  mergedAgreement: number;
  stepsPerSecond: number;
  trainSeconds: number;
  losses: number[];
  probe: { indices: number[]; logits: number[] };
}
interface PageResult {
  ok: boolean;
  error?: string;
  backend: 'cpu' | 'webgpu';
  summary: string;
  threads: number;
  isolated: boolean;
  seconds: number;
  before: number;
  runs: PageRun[];
}

/** The files of a ZIP of stored entries (what the page writes), each checked against its CRC-32. */
function unzipStored(zip: Uint8Array): Map<string, Uint8Array> {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.byteLength - 22;
  if (view.getUint32(end, true) !== 0x06054b50) throw new Error('no end-of-central-directory record');
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const files = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error('bad central directory entry');
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    const size = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true);
    const extra = view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
    const offset = view.getUint32(at + 42, true);
    const name = new TextDecoder().decode(zip.subarray(at + 46, at + 46 + nameLength));
    const dataAt = offset + 30 + view.getUint16(offset + 26, true) + view.getUint16(offset + 28, true);
    const data = zip.subarray(dataAt, dataAt + size);
    if (method !== 0) throw new Error(`${name}: compression method ${method}`);
    if (crc32(data) !== crc) throw new Error(`${name}: CRC mismatch`);
    files.set(name, data);
    at += 46 + nameLength + extra;
  }
  return files;
}

describe.skipIf(!!skip)('the demo page in Chromium', () => {
  let browser: Browser;
  let site: Awaited<ReturnType<typeof serveStatic>>;
  const opened: OpenedPage[] = [];
  const backend = createCpuBackend();
  setDefaultBackend(backend);
  const heldOut = readMnistDigits(MNIST_DIR).then((digits) => mnistSplit(digits, FINETUNE_DIGITS).test);

  beforeAll(async () => {
    if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST}index.html is missing: run pnpm build first`);
    mkdirSync(OUTPUT, { recursive: true });
    // The fixture model has no tokenizer: a word-level one over its 96 ids ('t0' … 't95') stands in.
    const vocab = Object.fromEntries(Array.from({ length: 96 }, (_, i) => [`t${i}`, i]));
    const tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: 'WhitespaceSplit' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab, unk_token: 't0' },
    };
    site = await serveStatic(
      DIST,
      { '/models/llama': join(LLAMA, 'base'), '/models/llama-adapter': join(LLAMA, 'adapter') },
      { '/models/llama/tokenizer.json': JSON.stringify(tokenizer), '/models/llama/tokenizer_config.json': '{}' },
    );
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(async () => {
    for (const o of opened) await o.close();
    await browser?.close();
    await site?.close();
    backend.dispose();
  });

  async function open(query: string, expectedFailures: readonly string[] = []): Promise<OpenedPage> {
    const o = await openPage(browser, `${site.origin}/${query}`, { expectedFailures });
    opened.push(o);
    return o;
  }

  /** Downloads the DoRA adapter through the page's button and loads it in Node (cpu) onto the base CNN. */
  async function nodeLogits(o: OpenedPage, run: PageRun): Promise<number[]> {
    const [download] = await Promise.all([o.page.waitForEvent('download'), o.page.click('#download')]);
    expect(download.suggestedFilename()).toBe('dora-mnist-adapter.zip');
    const dir = mkdtempSync(join(tmpdir(), 'dora-demo-'));
    try {
      const zipPath = join(dir, 'adapter.zip');
      await download.saveAs(zipPath);
      const files = unzipStored(readFileSync(zipPath));
      expect([...files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
      const folder = join(dir, 'dora-mnist');
      mkdirSync(folder);
      for (const [name, data] of files) writeFileSync(join(folder, name), data);
      expect(JSON.parse(readFileSync(join(folder, 'adapter_config.json'), 'utf8'))).toMatchObject({
        peft_type: 'LORA',
        use_dora: true,
        r: 8,
      });
      const test = await heldOut;
      const peft = await PeftModel.fromPretrained(await loadMnistBase(backend), folder);
      const batch = collateDigits(backend)(run.probe.indices.map((i) => test[i]!));
      const out = tidy(() => noGrad(() => peft.forward(batch.input)));
      const values = Array.from((await out.data()) as Float32Array);
      out.dispose();
      batch.input.dispose();
      peft.dispose();
      return values;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const clean = (o: OpenedPage) =>
    expect({ errors: o.errors, failedRequests: o.failedRequests, nodeRequests: o.nodeRequests }).toEqual({
      errors: [],
      failedRequests: [],
      nodeRequests: [],
    });

  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  it('trains DoRA and LoRA on the CPU backend (wasm threads): DoRA ≥ 90% held-out, merged = unmerged, adapter = Node', async () => {
    const o = await open('?backend=cpu&autorun=1');
    await o.page.waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, null, {
      timeout: 240_000,
      polling: 250,
    });
    const result = (await o.page.evaluate(() => (globalThis as unknown as { __result: unknown }).__result)) as PageResult;
    await o.page.screenshot({ path: join(OUTPUT, 'demo-train-cpu.png'), fullPage: true });
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ ok: true, backend: 'cpu', isolated: true });
    expect(result.threads).toBeGreaterThanOrEqual(1);
    expect(await o.page.locator('#backend').textContent()).toMatch(/^backend: CPU — wasm SIMD( \+ FMA)?, \d+ threads?$/);
    const [dora, lora] = result.runs;
    expect(dora).toMatchObject({ method: 'dora', steps: 500 });
    expect(lora).toMatchObject({ method: 'lora', steps: 500 });
    expect(result.before).toBeLessThan(0.05);
    expect(dora!.accuracy).toBeGreaterThanOrEqual(0.9);
    for (const r of [dora!, lora!]) {
      expect(r.mergedAccuracy).toBe(r.accuracy);
      expect(r.mergedAgreement).toBeGreaterThanOrEqual(0.999);
      expect(mean(r.losses.slice(-50))).toBeLessThan(mean(r.losses.slice(0, 50)) / 2);
    }
    console.log(
      `demo cpu (${result.summary}): DoRA ${(dora!.accuracy * 100).toFixed(2)}% at ${dora!.stepsPerSecond.toFixed(1)} steps/s, LoRA ${(lora!.accuracy * 100).toFixed(2)}% at ${lora!.stepsPerSecond.toFixed(1)} steps/s, page total ${result.seconds.toFixed(1)} s`,
    );
    expect(relativeError(dora!.probe.logits, await nodeLogits(o, dora!))).toBeLessThanOrEqual(1e-5);
    clean(o);
  });

  it('trains DoRA on WebGPU (SwiftShader): the loss falls, adapter = Node', async () => {
    const o = await open('?backend=webgpu&autorun=1&methods=dora&steps=12&evalStep=0');
    await o.page.waitForFunction(() => (globalThis as { __result?: unknown }).__result !== undefined, null, {
      timeout: 240_000,
      polling: 250,
    });
    const result = (await o.page.evaluate(() => (globalThis as unknown as { __result: unknown }).__result)) as PageResult;
    await o.page.screenshot({ path: join(OUTPUT, 'demo-train-webgpu.png'), fullPage: true });
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ ok: true, backend: 'webgpu' });
    expect(await o.page.locator('#backend').textContent()).toContain('WebGPU');
    const [dora] = result.runs;
    expect(dora).toMatchObject({ method: 'dora', steps: 12 });
    console.log(`webgpu losses: ${dora!.losses.map((l) => l.toFixed(3)).join(' ')}`);
    expect(mean(dora!.losses.slice(-4))).toBeLessThan(mean(dora!.losses.slice(0, 4)) * 0.8);
    expect(dora!.mergedAccuracy).toBe(dora!.accuracy);
    console.log(
      `demo webgpu (${result.summary}): DoRA 12 steps, loss ${mean(dora!.losses.slice(0, 4)).toFixed(3)} -> ${mean(dora!.losses.slice(-4)).toFixed(3)}, ${dora!.stepsPerSecond.toFixed(2)} steps/s, page total ${result.seconds.toFixed(1)} s`,
    );
    expect(relativeError(dora!.probe.logits, await nodeLogits(o, dora!))).toBeLessThanOrEqual(1e-4);
    clean(o);
  });

  it('without COOP/COEP headers: the CPU backend runs the wasm kernels on one thread and the page says so', async () => {
    const plain = await serveStatic(DIST, {}, {}, { isolation: false });
    try {
      const o = await openPage(browser, `${plain.origin}/?backend=cpu`);
      opened.push(o);
      await o.page.waitForFunction(() => !document.querySelector('#backend')?.textContent?.includes('starting'), null, { timeout: 30_000 });
      expect(await o.page.evaluate(() => crossOriginIsolated)).toBe(false);
      // The wasm kernels still run, on one thread (a non-shared memory with a resizable buffer).
      expect(await o.page.locator('#backend').textContent()).toMatch(
        /^backend: CPU — wasm SIMD( \+ FMA)?, 1 thread: page is not cross-origin isolated \(serve it with COOP\/COEP headers for wasm threads\)$/,
      );
      clean(o);
    } finally {
      await plain.close();
    }
  });

  it('applies a DoRA adapter to a Llama by URL: on = merged = Node, off differs', async () => {
    const ids = [1, 5, 9, 3];
    const { model } = await loadModel(join(LLAMA, 'base'), { backend });
    const peft = await PeftModel.fromPretrained(model, join(LLAMA, 'adapter'));
    const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array(ids), [1, ids.length], { dtype: 'int32' }))));
    const all = (await out.data()) as Float32Array;
    out.dispose();
    model.dispose();
    const vocab = all.length / ids.length;
    const expected = Array.from(all.subarray(all.length - vocab));

    const o = await open('?tab=apply&backend=cpu', ['/models/nothing/']);
    // A folder that is not there: the typed one-line error, shown on the page.
    await o.page.fill('#model-url', `${site.origin}/models/nothing`);
    await o.page.click('#load');
    await o.page.waitForFunction(() => (globalThis as { __applyLoaded?: unknown }).__applyLoaded !== undefined, null, { timeout: 60_000 });
    const missing = `ModelFolderError: ${site.origin}/models/nothing/config.json: cannot read config.json: no such file`;
    expect(await o.page.evaluate(() => (globalThis as { __applyLoaded?: unknown }).__applyLoaded)).toEqual({ ok: false, error: missing });
    expect(await o.page.locator('#apply-error').textContent()).toBe(missing);
    await o.page.evaluate(() => delete (globalThis as { __applyLoaded?: unknown }).__applyLoaded);

    await o.page.fill('#model-url', `${site.origin}/models/llama`);
    await o.page.fill('#adapter-url', `${site.origin}/models/llama-adapter`);
    await o.page.click('#load');
    await o.page.waitForFunction(() => (globalThis as { __applyLoaded?: unknown }).__applyLoaded !== undefined, null, { timeout: 60_000 });
    expect(await o.page.evaluate(() => (globalThis as { __applyLoaded?: unknown }).__applyLoaded)).toEqual({ ok: true, adapter: true });
    await o.page.fill('#prompt', ids.map((i) => `t${i}`).join(' '));
    const logits: Record<string, number[]> = {};
    for (const mode of ['on', 'off', 'merged'] as const) {
      await o.page.evaluate(() => delete (globalThis as { __applyResult?: unknown }).__applyResult);
      await o.page.check(`input[name=mode][value=${mode}]`);
      await o.page.click('#predict');
      await o.page.waitForFunction(() => (globalThis as { __applyResult?: unknown }).__applyResult !== undefined, null, {
        timeout: 60_000,
      });
      const r = (await o.page.evaluate(() => (globalThis as { __applyResult?: unknown }).__applyResult)) as {
        mode: string;
        error?: string;
        logits: number[];
        top: { id: number; token: string }[];
        promptIds: number[];
        continuation: string;
      };
      expect(r.promptIds).toEqual(ids);
      expect(r.top[0]!.token).toBe(`t${r.top[0]!.id}`);
      expect(r.continuation).toMatch(/^t\d+( t\d+)*$/);
      expect(r.error).toBeUndefined();
      expect(r.top).toHaveLength(10);
      logits[mode] = r.logits;
    }
    await o.page.screenshot({ path: join(OUTPUT, 'demo-apply.png'), fullPage: true });
    expect(relativeError(logits.on!, expected)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(logits.merged!, expected)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(logits.off!, expected)).toBeGreaterThan(1e-3);
    clean(o);
  });
});
