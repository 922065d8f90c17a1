/**
 * safetensors files on disk (Node only). `openSafetensors` validates the header and then reads one
 * tensor's byte range at a time, straight into that tensor's storage, so a loader can stream a checkpoint
 * larger than it wants to hold twice. `saveSafetensors` writes atomically: a temporary file in the same
 * folder, fsync, rename — readers never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SafetensorsError } from '../errors.js';
import { toFloat32, toInt32, type HostTensor } from './host-tensor.js';
import type { SafetensorsContents } from './safetensors.js';
import { decodeTensor } from './safetensors-decode.js';
import { layoutSafetensors, type TensorsToWrite } from './safetensors-encode.js';
import { HEADER_LENGTH_BYTES, parseHeader, readHeaderLength, type SafetensorsHeader, type TensorEntry } from './safetensors-header.js';

/** An open safetensors file whose tensors are read on demand. Call `close()` when done. */
export class SafetensorsFile {
  readonly file: string;
  readonly #handle: FileHandle;
  readonly #header: SafetensorsHeader;
  readonly #entries: ReadonlyMap<string, TensorEntry>;

  private constructor(file: string, handle: FileHandle, header: SafetensorsHeader) {
    this.file = file;
    this.#handle = handle;
    this.#header = header;
    this.#entries = new Map(header.entries.map((e) => [e.key, e]));
  }

  /** Opens `path` and validates its header against the file size; no tensor data is read yet. */
  static async open(path: string): Promise<SafetensorsFile> {
    const handle = await openOrThrow(path);
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new SafetensorsError('not a regular file', path);
      const size = stats.size;
      const prefix = await readExactly(handle, 0, Math.min(HEADER_LENGTH_BYTES, size), path);
      const length = readHeaderLength(prefix, size, path);
      const headerBytes = await readExactly(handle, HEADER_LENGTH_BYTES, length, path);
      return new SafetensorsFile(path, handle, parseHeader(headerBytes, size, path));
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.#header.metadata;
  }

  /** Keys in file order. */
  get keys(): string[] {
    return [...this.#entries.keys()];
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** dtype, shape and byte range of `key`, without reading it. */
  entry(key: string): TensorEntry {
    const entry = this.#entries.get(key);
    if (entry === undefined) throw new SafetensorsError('no such tensor in the file', this.file, key);
    return entry;
  }

  async read(key: string): Promise<HostTensor> {
    const entry = this.entry(key);
    const bytes = await readExactly(this.#handle, this.#header.dataStart + entry.begin, entry.end - entry.begin, this.file);
    return decodeTensor(entry, bytes, this.file);
  }

  /** `key` as float32 (F32, F16 or BF16 in the file). */
  async readFloat32(key: string): Promise<Float32Array> {
    return toFloat32(await this.read(key), { file: this.file, key });
  }

  /** `key` as int32 (I64 values must fit; I32, I8, U8 widen). */
  async readInt32(key: string): Promise<Int32Array> {
    return toInt32(await this.read(key), { file: this.file, key });
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

export function openSafetensors(path: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path);
}

/** Reads every tensor of `path` (each read straight into its own buffer). */
export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  const file = await SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, HostTensor>();
    for (const key of file.keys) tensors.set(key, await file.read(key));
    return { metadata: file.metadata, tensors };
  } finally {
    await file.close();
  }
}

/**
 * Writes `tensors` (and optional string `metadata`, e.g. `{ format: 'pt' }`) to `path` with the same
 * layout as the Python library. Atomic: on any failure the temporary file is removed and an existing
 * `path` is left untouched.
 */
export async function saveSafetensors(path: string, tensors: TensorsToWrite, metadata?: Readonly<Record<string, string>>): Promise<void> {
  const layout = layoutSafetensors(tensors, metadata, path);
  const temp = join(dirname(path), `${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      let position = 0;
      for (const part of [layout.header, ...layout.chunks]) {
        await writeFully(handle, part, position);
        position += part.byteLength;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new SafetensorsError(`could not write: ${(error as Error).message}`, path);
  }
  await syncFolder(dirname(path));
}

async function openOrThrow(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    throw new SafetensorsError(`cannot open: ${(error as Error).message}`, path);
  }
}

async function readExactly(handle: FileHandle, position: number, length: number, file: string): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(bytes, done, length - done, position + done));
    } catch (error) {
      throw new SafetensorsError(`cannot read: ${(error as Error).message}`, file);
    }
    if (bytesRead === 0) {
      throw new SafetensorsError(`file ended after ${position + done} bytes (it changed while being read?)`, file);
    }
    done += bytesRead;
  }
  return bytes;
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/** Makes the rename itself durable. Best effort: some platforms cannot fsync a directory. */
async function syncFolder(folder: string): Promise<void> {
  try {
    const handle = await open(folder, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Durability of the directory entry is a bonus; the file content is already synced.
  }
}
