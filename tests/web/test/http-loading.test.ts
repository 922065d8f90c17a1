/**
 * Loading from a web server, in Node (the page does the same through the same code): a loopback HTTP server
 * serves the PEFT fixtures' Llama model and DoRA adapter — honouring Range requests, ignoring them, sharded
 * with an index, with a shard that 404s, with a body cut short, slowly, and as a Hugging Face Hub repository
 * that wants a token. Every load must give the same weights as the folder on disk, one Range request per
 * tensor (never the whole checkpoint), progress that reaches the totals, and typed one-line errors.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type LoadProgress,
  noGrad,
  parseSafetensors,
  serializeSafetensors,
  setDefaultBackend,
  SafetensorsError,
  tensor,
  tidy,
} from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { loadModel, ModelFolderError, ShardIndexError } from '@dorajs/models';
import { AdapterFileError, PeftModel } from '@dorajs/peft';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve } from '../src/chromium.js';

const FIXTURE = fileURLToPath(new URL('../../../fixtures/peft/llama/', import.meta.url));
const BASE = join(FIXTURE, 'base');
const ADAPTER = join(FIXTURE, 'adapter');
const backend = createCpuBackend();
setDefaultBackend(backend);

/** The sharded copy of the base model: two shards and an index, built from the fixture's file. */
function shardedFiles(): Record<string, Uint8Array> {
  const { tensors, metadata } = parseSafetensors(readFileSync(join(BASE, 'model.safetensors')));
  const keys = [...tensors.keys()];
  const half = Math.ceil(keys.length / 2);
  const shards = [keys.slice(0, half), keys.slice(half)];
  const files: Record<string, Uint8Array> = {};
  const weightMap: Record<string, string> = {};
  shards.forEach((ks, i) => {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    files[name] = serializeSafetensors(new Map(ks.map((k) => [k, tensors.get(k)!])), metadata);
    for (const k of ks) weightMap[k] = name;
  });
  files['model.safetensors.index.json'] = new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return files;
}

interface Served {
  /** Requests seen: path and Range header. */
  log: { path: string; range: string | null; status: number; bytes: number }[];
}
const served: Served = { log: [] };

function fileFor(folder: string, file: string, sharded: Record<string, Uint8Array>): Uint8Array | null {
  if (folder === 'llama') return readOrNull(join(BASE, file));
  if (folder === 'llama-adapter') return readOrNull(join(ADAPTER, file));
  if (folder === 'sharded' || folder === 'sharded-404') {
    if (file === 'config.json') return readOrNull(join(BASE, file));
    if (folder === 'sharded-404' && file.startsWith('model-00002')) return null;
    return sharded[file] ?? null;
  }
  return null;
}

function readOrNull(path: string): Uint8Array | null {
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function handler(req: IncomingMessage, res: ServerResponse, sharded: Record<string, Uint8Array>): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  let parts = url.pathname.split('/').filter(Boolean);
  let mode = parts.shift() ?? '';
  if (mode === 'hub') {
    // /hub/<org>/<name>/resolve/<revision>/<file>
    const [org, name, resolve, revision, ...rest] = parts;
    if (resolve !== 'resolve' || revision !== 'main') return void res.writeHead(404).end();
    if (name === 'gated' && req.headers.authorization !== 'Bearer secret') return void res.writeHead(401).end();
    mode = 'range';
    parts = [org === 'meta' ? 'llama' : 'none', ...rest];
  }
  const [folder = '', file = ''] = parts;
  const body = fileFor(folder, file, sharded);
  const range = req.headers.range ?? null;
  const log = (status: number, bytes: number) => served.log.push({ path: url.pathname, range, status, bytes });
  if (!body) {
    log(404, 0);
    return void res.writeHead(404).end();
  }
  const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
  if (m && (mode === 'range' || mode === 'slow')) {
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), body.byteLength - 1);
    const part = body.subarray(start, end + 1);
    log(206, part.byteLength);
    res.writeHead(206, {
      'content-range': `bytes ${start}-${end}/${body.byteLength}`,
      'content-length': part.byteLength,
      'accept-ranges': 'bytes',
    });
    if (mode === 'slow') {
      for (let i = 0; i < part.byteLength; i += 512) {
        res.write(part.subarray(i, i + 512));
        await sleep(1);
      }
      return void res.end();
    }
    return void res.end(part);
  }
  // Range ignored: the whole body, with its length.
  if (mode === 'truncated' && file.endsWith('.safetensors')) {
    log(200, body.byteLength >> 1);
    res.writeHead(200, { 'content-length': body.byteLength });
    res.write(body.subarray(0, body.byteLength >> 1));
    await sleep(20);
    return void res.destroy();
  }
  log(200, body.byteLength);
  res.writeHead(200, { 'content-length': body.byteLength }).end(body);
}

let site: Awaited<ReturnType<typeof serve>>;
beforeAll(async () => {
  const sharded = shardedFiles();
  site = await serve((req, res) => handler(req, res, sharded));
});
afterAll(async () => {
  await site?.close();
});

async function weightsOf(source: string, options: object = {}): Promise<Map<string, Float32Array>> {
  const { model } = await loadModel(source, { backend, ...options });
  const out = new Map<string, Float32Array>();
  for (const [k, p] of model.stateDict()) out.set(k, (await p.data()) as Float32Array);
  model.dispose();
  return out;
}

let reference: Map<string, Float32Array>;
beforeAll(async () => {
  reference = await weightsOf(BASE);
});

const modelBytes = () => readFileSync(join(BASE, 'model.safetensors')).byteLength;

describe('loadModel from an http(s) URL', () => {
  it('with Range: the same weights, one ranged request per tensor, never the whole file', async () => {
    served.log = [];
    const progress: LoadProgress[] = [];
    // A small first request (the fixture is smaller than the default 256 KiB probe).
    const options = { probeBytes: 4096, onProgress: (p: LoadProgress) => progress.push(p) };
    expect(await weightsOf(`${site.origin}/range/llama`, options)).toEqual(reference);
    const weights = served.log.filter((r) => r.path.endsWith('model.safetensors'));
    expect(weights.every((r) => r.range !== null && r.status === 206)).toBe(true);
    expect(Math.max(...weights.map((r) => r.bytes))).toBeLessThan(modelBytes() / 2);
    expect(weights.length).toBeGreaterThan(progress.length / 2);
    const last = progress[progress.length - 1]!;
    expect(last.loadedTensors).toBe(last.totalTensors);
    expect(last.loadedBytes).toBe(last.totalBytes);
    expect(progress.length).toBe(last.totalTensors);
  });

  it('without Range: the body is streamed once, in file order', async () => {
    served.log = [];
    expect(await weightsOf(`${site.origin}/norange/llama`)).toEqual(reference);
    const weights = served.log.filter((r) => r.path.endsWith('model.safetensors'));
    // One request for the existence check (cancelled), one streamed read of the tensors.
    expect(weights.length).toBeLessThanOrEqual(3);
  });

  it('tensors larger than chunkBytes: bounded Range requests, the same weights exactly', async () => {
    served.log = [];
    expect(await weightsOf(`${site.origin}/range/llama`, { probeBytes: 4096, chunkBytes: 256 })).toEqual(reference);
    const ranged = served.log.filter((r) => r.path.endsWith('model.safetensors') && r.bytes !== 4096);
    // Several tensors are many times 256 bytes, so they took several requests each, none over 256 bytes.
    expect(Math.max(...[...reference.values()].map((v) => v.byteLength))).toBeGreaterThan(4 * 256);
    expect(ranged.every((r) => r.status === 206 && r.bytes <= 256)).toBe(true);
    expect(ranged.length).toBeGreaterThan(2 * reference.size);
    // Without Range the body is still streamed once, whatever the piece size.
    served.log = [];
    expect(await weightsOf(`${site.origin}/norange/llama`, { chunkBytes: 256 })).toEqual(reference);
    expect(served.log.filter((r) => r.path.endsWith('model.safetensors')).length).toBeLessThanOrEqual(3);
  });

  it('a sharded checkpoint through its index', async () => {
    expect(await weightsOf(`${site.origin}/range/sharded`)).toEqual(reference);
    expect(await weightsOf(`${site.origin}/norange/sharded`)).toEqual(reference);
  });

  it('a slow body: progress is reported tensor by tensor', async () => {
    const progress: LoadProgress[] = [];
    expect(
      await weightsOf(`${site.origin}/slow/llama`, { probeBytes: 1024, onProgress: (p: LoadProgress) => progress.push({ ...p }) }),
    ).toEqual(reference);
    expect(progress.length).toBeGreaterThan(3);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.loadedBytes).toBeGreaterThan(progress[i - 1]!.loadedBytes);
  });

  it('a shard that 404s is a ShardIndexError naming it', async () => {
    await expect(loadModel(`${site.origin}/range/sharded-404`, { backend })).rejects.toThrow(ShardIndexError);
    await expect(loadModel(`${site.origin}/range/sharded-404`, { backend })).rejects.toThrow(/model-00002-of-00002\.safetensors/);
  });

  it('a body cut short is a SafetensorsError naming the URL, not a short tensor', async () => {
    const err = await loadModel(`${site.origin}/truncated/llama`, { backend }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toContain(`${site.origin}/truncated/llama/model.safetensors`);
  });

  it('a folder without config.json is a ModelFolderError naming the URL', async () => {
    const err = await loadModel(`${site.origin}/range/nothing`, { backend }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFolderError);
    expect((err as Error).message).toBe(`${site.origin}/range/nothing/config.json: cannot read config.json: no such file`);
  });
});

describe('the Hugging Face Hub', () => {
  it("'org/name' with a revision and an endpoint", async () => {
    expect(await weightsOf('meta/llama', { endpoint: `${site.origin}/hub`, revision: 'main' })).toEqual(reference);
  });

  it('a gated repository needs the access token', async () => {
    await expect(loadModel('meta/gated', { backend, endpoint: `${site.origin}/hub` })).rejects.toThrow(/HTTP 401.*access token/);
    expect(await weightsOf('meta/gated', { endpoint: `${site.origin}/hub`, accessToken: 'secret' })).toEqual(reference);
  });
});

describe('PeftModel.fromPretrained from a URL', () => {
  it('gives the same outputs as the adapter folder on disk', async () => {
    const ids = tensor(new Int32Array([1, 5, 9, 3]), [1, 4], { dtype: 'int32' });
    const outputs: Float32Array[] = [];
    for (const source of [ADAPTER, `${site.origin}/range/llama-adapter`, `${site.origin}/norange/llama-adapter`]) {
      const { model } = await loadModel(BASE, { backend });
      const peft = await PeftModel.fromPretrained(model, source);
      const logits = tidy(() => noGrad(() => peft.forward(ids)));
      outputs.push((await logits.data()) as Float32Array);
      logits.dispose();
      peft.getBaseModel().dispose();
    }
    expect(outputs[1]).toEqual(outputs[0]);
    expect(outputs[2]).toEqual(outputs[0]);
    ids.dispose();
  });

  it('an adapter URL without adapter_config.json is an AdapterFileError naming it', async () => {
    const { model } = await loadModel(BASE, { backend });
    const err = await PeftModel.fromPretrained(model, `${site.origin}/range/llama`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterFileError);
    expect((err as Error).message).toContain(`${site.origin}/range/llama/adapter_config.json`);
    model.dispose();
  });
});
