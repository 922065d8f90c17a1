/** Node file I/O for adapter directories; browsers get node-io.web.ts instead (the `#node-io` import's `node` condition). */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { FileError, type HostTensor } from '@dorajs/core';
import {
  checkOutputPath,
  errnoCode,
  type FileSystem,
  nodeFileSystem,
  openSafetensors,
  readRegularText,
  replaceFolder,
  saveSafetensors,
  writeFileDurable,
} from '@dorajs/core/node';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME } from '../config/config-json.js';
import { AdapterFileError } from '../errors.js';
import { type AdapterReader, safetensorsAdapterReader } from './adapter-source.js';

/** adapter_config.json files are a few kilobytes; anything past this is not one. */
export const MAX_ADAPTER_CONFIG_BYTES = 16 * 2 ** 20;

export async function openAdapterDirectory(dir: string): Promise<AdapterReader> {
  const configFile = join(dir, ADAPTER_CONFIG_NAME);
  const weightsFile = join(dir, ADAPTER_WEIGHTS_NAME);
  const text = await readRegularText(configFile, MAX_ADAPTER_CONFIG_BYTES).catch((e: unknown) => {
    if (!(e instanceof FileError)) throw e;
    throw new AdapterFileError(`cannot read the adapter config (${errnoCode(e.cause) ?? e.reason})`, configFile, { cause: e });
  });
  try {
    await access(weightsFile);
  } catch (e) {
    throw new AdapterFileError(
      `cannot read the adapter weights (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      weightsFile,
      { cause: e },
    );
  }
  return safetensorsAdapterReader(configFile, text, await openSafetensors(weightsFile));
}

/** One adapter's two files, and the subfolder they go in (null: the folder itself). */
export interface AdapterFolderEntry {
  readonly subfolder: string | null;
  readonly configText: string;
  readonly tensors: ReadonlyMap<string, HostTensor>;
}

/**
 * Writes adapters into `dir` as one atomic replacement (core's `replaceFolder`): a kill or an I/O error
 * leaves the previous folder whole — never new weights beside an old config. Other entries already in
 * `dir` (other adapters' subfolders, a README) are carried over. The path is checked before any work.
 */
export async function writeAdapterFolder(
  dir: string,
  adapters: readonly AdapterFolderEntry[],
  fs?: FileSystem,
  report?: (message: string) => void,
): Promise<void> {
  await checkOutputPath(dir, { kind: 'folder', fs });
  await replaceFolder(
    dir,
    async (temp) => {
      for (const a of adapters) {
        const folder = a.subfolder === null ? temp : join(temp, a.subfolder);
        if (a.subfolder !== null) await (fs ?? nodeFileSystem).mkdir(folder, { recursive: true });
        await saveSafetensors(join(folder, ADAPTER_WEIGHTS_NAME), a.tensors, { format: 'pt' }, { fs });
        await writeFileDurable(join(folder, ADAPTER_CONFIG_NAME), a.configText, fs);
      }
    },
    { fs, keepOthers: true, ...(report ? { report } : {}) },
  );
}
