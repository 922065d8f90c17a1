/**
 * The browser's stand-in for node-io.ts (picked by the `#node-io` import's conditions): folder paths on disk
 * need Node, so a path fails with the same typed error as an unreadable folder, naming it.
 */
import type { HostTensor } from '@dorajs/core';
import { ADAPTER_CONFIG_NAME } from '../config/config-json.js';
import { AdapterFileError } from '../errors.js';
import type { AdapterReader } from './adapter-source.js';

const NODE_ONLY = 'adapter folders on disk need Node; in a browser pass the files (AdapterFiles) instead';

export async function openAdapterDirectory(dir: string): Promise<AdapterReader> {
  throw new AdapterFileError(NODE_ONLY, `${dir}/${ADAPTER_CONFIG_NAME}`);
}

export async function writeAdapterFolder(
  dir: string,
  _adapters: readonly AdapterFolderEntry[],
  _fs?: unknown,
  _report?: unknown,
): Promise<void> {
  throw new AdapterFileError(NODE_ONLY, dir);
}

/** One adapter's two files, and the subfolder they go in (null: the folder itself). */
export interface AdapterFolderEntry {
  readonly subfolder: string | null;
  readonly configText: string;
  readonly tensors: ReadonlyMap<string, HostTensor>;
}
