/**
 * Folders and files on disk (the `node` condition of core's `#node-directory` import; browsers get
 * node-directory.web.ts). Files are opened as regular files only (regular-file.ts) and read by positioned
 * reads on one handle.
 */
import type { FileHandle } from 'node:fs/promises';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FileError } from '../../errors.js';
import { errnoCode, ioReason } from '../file-system.js';
import { openRegularFile } from '../regular-file.js';
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
