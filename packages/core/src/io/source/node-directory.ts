/**
 * Folders and files on disk (the `node` condition of core's `#node-directory` import; browsers get
 * node-directory.web.ts). Files are opened as regular files only (regular-file.ts) and read by positioned
 * reads on one handle.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { FileError } from '../../errors.js';
import { errnoCode, ioReason } from '../file-system.js';
import { openRegularFile } from '../regular-file.js';
import type { CacheEntryWriter, DownloadCache } from './download-cache.js';
import type { ByteReader, FileSource } from './file-source.js';

/** Opens `path` for positioned reads; null when it does not exist. */
export async function openFileReader(path: string): Promise<ByteReader | null> {
  try {
    const { handle, size } = await openRegularFile(path);
    return fileHandleReader(path, handle, size);
  } catch (error) {
    if (error instanceof FileError && errnoCode(error.cause) === 'ENOENT') return null;
    throw error;
  }
}

/** Positioned reads of an open regular file; `read` fails with a FileError naming `path`. */
export function fileHandleReader(path: string, handle: FileHandle, size: number): ByteReader {
  return {
    name: path,
    size,
    async read(offset, length) {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(length);
      } catch {
        throw new FileError(`cannot allocate ${length} bytes to read it`, path);
      }
      let done = 0;
      while (done < length) {
        let bytesRead: number;
        try {
          ({ bytesRead } = await handle.read(bytes, done, length - done, offset + done));
        } catch (error) {
          throw new FileError(`cannot read: ${ioReason(error)}`, path, { cause: error });
        }
        if (bytesRead === 0) throw new FileError(`file ended after ${offset + done} bytes (it changed while being read?)`, path);
        done += bytesRead;
      }
      return bytes;
    },
    close: () => handle.close(),
  };
}

/** The folder at `dir` (made absolute, so names survive a change of working directory). */
export function directorySource(dir: string): FileSource {
  const root = resolve(dir);
  const describe = (file: string) => join(root, file);
  return { name: root, kind: 'directory', describe, open: (file) => openFileReader(describe(file)) };
}

/** `path` as a folder on disk when it is one, else null (then it may be a URL or a Hub id). */
export async function existingDirectory(path: string): Promise<FileSource | null> {
  const s = await stat(path).catch(() => null);
  return s?.isDirectory() ? directorySource(path) : null;
}

/** `$DORA_CACHE`, else `~/.cache/dorajs` (as transformers keeps `~/.cache/huggingface`). */
export function defaultCacheDirectory(): string | null {
  return process.env.DORA_CACHE || join(homedir(), '.cache', 'dorajs');
}

/**
 * A download cache in the folder `dir`: one file per URL, named by the URL's SHA-256. An entry is written to a
 * unique `.part` file and renamed into place on commit (atomic on one file system), so a reader never sees
 * half a file and a killed process leaves at most a `.part` file behind.
 */
export function directoryCache(dir: string): DownloadCache {
  const root = resolve(dir);
  const pathOf = (url: string) => join(root, createHash('sha256').update(url).digest('hex'));
  return {
    name: root,
    async get(url) {
      const reader = await openFileReader(pathOf(url));
      return reader && { ...reader, name: url };
    },
    async begin(url, size): Promise<CacheEntryWriter> {
      const final = pathOf(url);
      const part = `${final}.${randomUUID()}.part`;
      await mkdir(root, { recursive: true });
      let handle: FileHandle | null = await open(part, 'wx');
      let written = 0;
      const discard = async () => {
        await handle?.close().catch(() => {});
        handle = null;
        await rm(part, { force: true });
      };
      return {
        async write(offset, bytes) {
          if (!handle) throw new FileError('cache entry already closed', part);
          let done = 0;
          while (done < bytes.byteLength) {
            const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, offset + done);
            done += bytesWritten;
          }
          written = Math.max(written, offset + bytes.byteLength);
        },
        async commit() {
          if (!handle) throw new FileError('cache entry already closed', part);
          try {
            if (written !== size || (await handle.stat()).size !== size)
              throw new FileError(`cache entry holds ${written} of ${size} bytes`, part);
            await handle.sync();
            await handle.close();
            handle = null;
            await rename(part, final);
          } catch (e) {
            await discard();
            throw e;
          }
        },
        abort: discard,
      };
    },
    async delete(url) {
      await rm(pathOf(url), { force: true });
    },
  };
}
