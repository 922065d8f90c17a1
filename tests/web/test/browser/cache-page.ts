/**
 * The download cache in a page (bundled by download-cache.test.ts): a model and an adapter loaded from URLs
 * with the Cache API or OPFS as the cache; the test counts the server's requests between calls.
 */
import { cacheStorageCache, type DownloadCache, noGrad, opfsCache, opfsDirectory, setDefaultBackend, tensor, tidy } from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { loadModel } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';

const backend = createCpuBackend();
setDefaultBackend(backend);
const IDS = [1, 5, 9, 3];
const caches: Record<string, DownloadCache> = { 'cache-api': cacheStorageCache('dorajs-test'), opfs: opfsCache('dorajs-test-cache') };

async function load(model: string, adapter: string, kind: string): Promise<number[] | string> {
  const cache = caches[kind]!;
  try {
    const { model: base } = await loadModel(model, { backend, cache, probeBytes: 1024 });
    const peft = await PeftModel.fromPretrained(base, adapter, { cache, probeBytes: 1024 });
    const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32' }))));
    const values = Array.from((await out.data()) as Float32Array);
    out.dispose();
    base.dispose();
    return values;
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

/** Whether the cache holds `url`, and (OPFS) the names in its folder. */
async function holds(kind: string, url: string): Promise<{ cached: boolean; files: string[] }> {
  const reader = await caches[kind]!.get(url);
  await reader?.close();
  const files: string[] = [];
  if (kind === 'opfs') {
    const dir = (await opfsDirectory('dorajs-test-cache', { create: true })) as unknown as { keys(): AsyncIterable<string> };
    for await (const name of dir.keys()) files.push(name);
  }
  return { cached: reader !== null, files };
}

(globalThis as unknown as { dora: unknown }).dora = { load, holds };
(globalThis as { __ready?: boolean }).__ready = true;
