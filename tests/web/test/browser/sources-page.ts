/**
 * The loaders in a page (bundled by web-sources.test.ts): a model and an adapter from a URL, from a folder
 * dropped into a webkitdirectory input, and from OPFS; the adapter saved back into OPFS. Each run reports the
 * logits for fixed ids, which the test compares with Node's.
 */
import { type FileSource, noGrad, opfsDirectory, type SourceInput, setDefaultBackend, tensor, tidy } from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { loadModel } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';

const backend = createCpuBackend();
setDefaultBackend(backend);
const IDS = [1, 5, 9, 3];

async function logits(model: SourceInput, adapter: SourceInput): Promise<number[]> {
  const { model: base } = await loadModel(model, { backend });
  const peft = await PeftModel.fromPretrained(base, adapter);
  const out = tidy(() => noGrad(() => peft.forward(tensor(new Int32Array(IDS), [1, IDS.length], { dtype: 'int32' }))));
  const values = Array.from((await out.data()) as Float32Array);
  out.dispose();
  base.dispose();
  return values;
}

/** Copies the files of a URL folder into an OPFS folder (what an app caching a model would do). */
async function copyToOpfs(url: string, folder: string, files: readonly string[]): Promise<void> {
  const dir = await opfsDirectory(folder, { create: true });
  for (const f of files) {
    const res = await fetch(`${url}/${f}`);
    const w = await (await dir.getFileHandle(f, { create: true })).createWritable!();
    await w.write(await res.blob());
    await w.close();
  }
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

const api = {
  async url(origin: string) {
    return logits(`${origin}/llama`, `${origin}/llama-adapter`);
  },
  async dropped() {
    const input = document.querySelector<HTMLInputElement>('#model')!;
    const adapter = document.querySelector<HTMLInputElement>('#adapter')!;
    return logits(input.files!, adapter.files!);
  },
  async opfs(origin: string) {
    await copyToOpfs(`${origin}/llama`, 'models/llama', ['config.json', 'model.safetensors']);
    await copyToOpfs(`${origin}/llama-adapter`, 'adapters/dora', ['adapter_config.json', 'adapter_model.safetensors']);
    const values = await logits(await opfsDirectory('models/llama'), await opfsDirectory('adapters/dora'));
    // Save the adapter back into OPFS and load that copy: the same logits.
    const { model: base } = await loadModel(await opfsDirectory('models/llama'), { backend });
    const peft = await PeftModel.fromPretrained(base, await opfsDirectory('adapters/dora'));
    await peft.savePretrained(await opfsDirectory('saved', { create: true }));
    base.dispose();
    const again = await logits(await opfsDirectory('models/llama'), await opfsDirectory('saved'));
    return { values, again };
  },
  async errors(origin: string) {
    const empty: FileSource = { name: 'empty', kind: 'memory', describe: (f) => `empty/${f}`, open: async () => null };
    return {
      missing: await errorOf(loadModel(`${origin}/nothing`, { backend })),
      noConfig: await errorOf(loadModel(empty, { backend })),
      path: await errorOf(loadModel('./llama', { backend })),
    };
  },
};

(globalThis as unknown as { dora: typeof api }).dora = api;
(globalThis as unknown as { __ready: boolean }).__ready = true;
