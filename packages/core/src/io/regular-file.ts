/**
 * Inputs are read only from regular files. Opening a FIFO for reading blocks until a writer appears, and
 * a check before the open (`stat`, then `open`) races with a swap of the path; so the file is opened
 * non-blocking and the *handle* is `fstat`ed: anything but a regular file is refused before one byte
 * is read.
 */
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { FileError } from '../errors.js';
import { type FileSystem, ioReason, nodeFileSystem } from './file-system.js';

// O_NONBLOCK makes the open of a FIFO return at once; on a regular file it changes nothing.
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

export interface OpenedFile {
  readonly handle: FileHandle;
  readonly size: number;
}

/** Opens `path` if it is a regular file; throws FileError otherwise (the handle is closed). */
export async function openRegularFile(path: string, fs: FileSystem = nodeFileSystem): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    handle = await fs.open(path, READ_FLAGS);
  } catch (error) {
    throw new FileError(`cannot open: ${ioReason(error)}`, path, { cause: error });
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new FileError(`not a regular file (${kindOf(stats)})`, path);
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close().catch(() => {});
    if (error instanceof FileError) throw error;
    throw new FileError(`cannot stat: ${ioReason(error)}`, path, { cause: error });
  }
}

/**
 * The whole of a regular file of at most `maxBytes`, checked against the size before reading, for small
 * inputs (config.json, adapter_config.json, shard indexes).
 */
export async function readRegularFile(path: string, maxBytes: number, fs: FileSystem = nodeFileSystem): Promise<Uint8Array> {
  const { handle, size } = await openRegularFile(path, fs);
  try {
    if (size > maxBytes) throw new FileError(`is ${size} bytes, over the ${maxBytes}-byte limit for this kind of file`, path);
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(bytes, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === size ? bytes : bytes.subarray(0, done);
  } catch (error) {
    if (error instanceof FileError) throw error;
    throw new FileError(`cannot read: ${ioReason(error)}`, path, { cause: error });
  } finally {
    await handle.close().catch(() => {});
  }
}

/** UTF-8 text of a small regular file (see `readRegularFile`); invalid UTF-8 is a FileError. */
export async function readRegularText(path: string, maxBytes: number, fs: FileSystem = nodeFileSystem): Promise<string> {
  const bytes = await readRegularFile(path, maxBytes, fs);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FileError('is not valid UTF-8 text', path);
  }
}

function kindOf(stats: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
}): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a named pipe';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a file';
}
