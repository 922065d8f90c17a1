/** Node file I/O for adapter directories; browsers get node-io.web.ts instead (the `#node-io` import's `node` condition). */
import { randomBytes } from 'node:crypto';
import { access, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { HostTensor } from '@dorajs/core';
import { openSafetensors, saveSafetensors } from '@dorajs/core/node';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME } from '../config/config-json.js';
import { AdapterFileError } from '../errors.js';
import type { AdapterReader } from './adapter-source.js';

export async function openAdapterDirectory(dir: string): Promise<AdapterReader> {
  const configFile = join(dir, ADAPTER_CONFIG_NAME);
  const weightsFile = join(dir, ADAPTER_WEIGHTS_NAME);
  let text: string;
  try {
    text = await readFile(configFile, 'utf8');
  } catch (e) {
    throw new AdapterFileError(
      `cannot read the adapter config (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      configFile,
      { cause: e },
    );
  }
  try {
    await access(weightsFile);
  } catch (e) {
    throw new AdapterFileError(
      `cannot read the adapter weights (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      weightsFile,
      { cause: e },
    );
  }
  const file = await openSafetensors(weightsFile);
  return {
    configFile,
    weightsFile,
    configText: async () => text,
    keys: file.keys,
    describe: (key) => {
      if (!file.has(key)) return undefined;
      const e = file.entry(key);
      return { dtype: e.dtype, shape: e.shape };
    },
    read: (key) => file.read(key),
    close: () => file.close(),
  };
}

/** Writes adapter_config.json and adapter_model.safetensors into `dir` (created if needed), each atomically. */
export async function writeAdapterDirectory(dir: string, configText: string, tensors: ReadonlyMap<string, HostTensor>): Promise<void> {
  await mkdir(dir, { recursive: true });
  await saveSafetensors(join(dir, ADAPTER_WEIGHTS_NAME), tensors, { format: 'pt' });
  await writeTextAtomic(join(dir, ADAPTER_CONFIG_NAME), configText);
}

async function writeTextAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw new AdapterFileError(`could not write (${(e as Error).message})`, path, { cause: e });
  }
}

export function subfolder(dir: string, name: string): string {
  return join(dir, name);
}
