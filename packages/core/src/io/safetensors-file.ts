/**
 * safetensors files on disk (Node only). `openSafetensors` validates the header and then reads one
 * tensor's byte range at a time, straight into that tensor's storage, so a loader can stream a checkpoint
 * larger than it wants to hold twice. Only regular files are opened (a FIFO is refused, never waited on),
 * and the header is validated against the file size before any tensor is read. `saveSafetensors` writes
 * atomically (`atomic.ts`): readers never see half a file.
 */
import type { FileHandle } from 'node:fs/promises';
import { FileError, SafetensorsError } from '../errors.js';
import { type AtomicWriteOptions, replaceFile } from './atomic.js';
import { type FileSystem, ioReason } from './file-system.js';
import { openRegularFile } from './regular-file.js';
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
  static async open(path: string, fs?: FileSystem): Promise<SafetensorsFile> {
    const { handle, size } = await openRegularFile(path, fs).catch((error: unknown) => {
      throw error instanceof FileError ? new SafetensorsError(error.reason, path) : error;
    });
    try {
      const prefix = await readExactly(handle, 0, Math.min(HEADER_LENGTH_BYTES, size), path);
      const length = readHeaderLength(prefix, size, path);
      const headerBytes = await readExactly(handle, HEADER_LENGTH_BYTES, length, path);
      return new SafetensorsFile(path, handle, parseHeader(headerBytes, size, path));
    } catch (error) {
      await handle.close().catch(() => {});
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
    const bytes = await readExactly(this.#handle, this.#header.dataStart + entry.begin, entry.end - entry.begin, this.file, key);
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

export function openSafetensors(path: string, fs?: FileSystem): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path, fs);
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
 * layout as the Python library. Atomic: on any failure an existing `path` is left untouched and an
 * OutputError names `path`.
 */
export async function saveSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const layout = layoutSafetensors(tensors, metadata, path);
  await replaceFile(path, [layout.header, ...layout.chunks], options);
}

async function readExactly(handle: FileHandle, position: number, length: number, file: string, key?: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(length);
  } catch {
    throw new SafetensorsError(`cannot allocate ${length} bytes to read it`, file, key);
  }
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(bytes, done, length - done, position + done));
    } catch (error) {
      throw new SafetensorsError(`cannot read: ${ioReason(error)}`, file, key);
    }
    if (bytesRead === 0) {
      throw new SafetensorsError(`file ended after ${position + done} bytes (it changed while being read?)`, file, key);
    }
    done += bytesRead;
  }
  return bytes;
}
