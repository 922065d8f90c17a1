/** Browsers' side of core's `#node-directory` import: no folders on disk (pages use URLs, files and handles). */
import { FileError } from '../../errors.js';
import type { DownloadCache } from './download-cache.js';
import type { ByteReader, FileSource } from './file-source.js';

const NODE_ONLY = 'folders on disk need Node; in a page pass a URL, a Hub id, dropped files or a directory handle';

export async function openFileReader(path: string): Promise<ByteReader | null> {
  throw new FileError(NODE_ONLY, path);
}

export function directorySource(dir: string): FileSource {
  return {
    name: dir,
    kind: 'directory',
    describe: (file) => `${dir}/${file}`,
    open: async (file) => {
      throw new FileError(NODE_ONLY, `${dir}/${file}`);
    },
  };
}

export async function existingDirectory(_path: string): Promise<FileSource | null> {
  return null;
}

/** No folders in a page: the default cache there is the Cache API or OPFS. */
export function defaultCacheDirectory(): string | null {
  return null;
}

export function directoryCache(dir: string): DownloadCache {
  const fail = async (): Promise<never> => {
    throw new FileError('a cache folder needs Node; in a page use cacheStorageCache() or opfsCache()', dir);
  };
  return { name: dir, get: fail, begin: fail, delete: fail };
}
