/**
 * A safetensors file read through a ByteReader (disk, HTTP ranges, a Blob): the header is validated against the
 * file's size before anything else, then one tensor's byte range is read at a time, straight into that
 * tensor's storage — a loader streams a checkpoint larger than it wants to hold twice. Browser-safe.
 */
import { FileError, SafetensorsError } from '../errors.js';
import { toFloat32, toInt32, type HostTensor } from './host-tensor.js';
import { decodeTensor } from './safetensors-decode.js';
import { bytesPerElement, isReadableDType } from './safetensors-dtypes.js';
import { HEADER_LENGTH_BYTES, parseHeader, readHeaderLength, type SafetensorsHeader, type TensorEntry } from './safetensors-header.js';
import type { ByteReader } from './source/file-source.js';

/** Bytes per piece of `readChunks` by default: one HTTP Range request's body or file read. */
export const DEFAULT_CHUNK_BYTES = 8 * 2 ** 20;

/** An open safetensors file whose tensors are read on demand. Call `close()` when done. */
export class SafetensorsReader {
  readonly file: string;
  readonly #reader: ByteReader;
  readonly #header: SafetensorsHeader;
  readonly #entries: ReadonlyMap<string, TensorEntry>;
  /** readChunks' piece buffer for readers with `readInto`, reused from tensor to tensor (null while in use). */
  #staging: Uint8Array | null = null;

  protected constructor(reader: ByteReader, header: SafetensorsHeader) {
    this.file = reader.name;
    this.#reader = reader;
    this.#header = header;
    this.#entries = new Map(header.entries.map((e) => [e.key, e]));
  }

  /** Validates the header of `reader`'s file; no tensor data is read yet. The reader is closed on failure. */
  static async from(reader: ByteReader): Promise<SafetensorsReader> {
    return new SafetensorsReader(reader, await readHeader(reader));
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.#header.metadata;
  }

  /** Keys in file order. */
  get keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** Bytes of tensor data in the file. */
  get dataBytes(): number {
    return this.#reader.size - this.#header.dataStart;
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
    const bytes = await this.#reader.read(this.#header.dataStart + entry.begin, entry.end - entry.begin).catch((e: unknown) => {
      throw asSafetensorsError(e, this.file, key);
    });
    return decodeTensor(entry, bytes, this.file);
  }

  /**
   * `key` in consecutive pieces of at most `maxBytes` (rounded down to whole elements, at least one): each a
   * host tensor of shape [elements] in the file's dtype, read as its own range (an HTTP Range request, a
   * file read), so a loader streaming it into backend storage holds one piece at a time.
   *
   * Where the reader has `readInto` (the HTTP readers), every piece is read into one buffer that the next
   * piece — of this tensor or of the next one read — overwrites: use (or copy) a piece before asking for the
   * next. A page loading a checkpoint then allocates one piece buffer, not one per Range request.
   */
  async *readChunks(key: string, maxBytes: number = DEFAULT_CHUNK_BYTES): AsyncGenerator<HostTensor> {
    const entry = this.entry(key);
    if (!isReadableDType(entry.dtype)) {
      throw new SafetensorsError(`dtype ${entry.dtype} is not supported (readable: F32, F16, BF16, I64, I32, I8, U8)`, this.file, key);
    }
    if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0))
      throw new RangeError(`readChunks: maxBytes must be a positive integer, got ${maxBytes}`);
    const width = bytesPerElement(entry.dtype);
    const step = Math.max(width, maxBytes - (maxBytes % width));
    const begin = this.#header.dataStart + entry.begin;
    const total = entry.end - entry.begin;
    const reader = this.#reader;
    let staging: Uint8Array | null = null;
    if (reader.readInto && total > 0) {
      // Take the shared buffer (a second generator running at the same time gets its own).
      staging =
        this.#staging !== null && this.#staging.byteLength >= Math.min(step, total) ? this.#staging : new Uint8Array(Math.min(step, total));
      this.#staging = null;
    }
    // (The size is kept apart: a buffer taken over by the reader reads as 0 bytes long.)
    const stagingBytes = staging?.byteLength ?? 0;
    try {
      for (let done = 0; done < total; done += step) {
        const length = Math.min(step, total - done);
        const at = begin + done;
        const bytes = await (staging ? reader.readInto!(at, staging.subarray(0, length)) : reader.read(at, length)).catch((e: unknown) => {
          throw asSafetensorsError(e, this.file, key);
        });
        // The reader may have taken the buffer over (a BYOB read): go on with the one it gave back.
        if (staging) staging = new Uint8Array(bytes.buffer, bytes.byteOffset, stagingBytes);
        yield decodeTensor({ ...entry, shape: [length / width] }, bytes, this.file);
      }
    } finally {
      // A buffer lost to a failed read (detached) is not kept.
      if (staging && staging.buffer.byteLength > 0 && (this.#staging === null || this.#staging.byteLength < staging.byteLength))
        this.#staging = staging;
    }
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
    this.#staging = null;
    await this.#reader.close();
  }
}

/** Reads and validates the header; closes the reader when it is not a safetensors file. */
export async function readHeader(reader: ByteReader): Promise<SafetensorsHeader> {
  try {
    const size = reader.size;
    const prefix = await reader.read(0, Math.min(HEADER_LENGTH_BYTES, size));
    const length = readHeaderLength(prefix, size, reader.name);
    const headerBytes = await reader.read(HEADER_LENGTH_BYTES, length);
    return parseHeader(headerBytes, size, reader.name);
  } catch (error) {
    await reader.close();
    throw asSafetensorsError(error, reader.name);
  }
}

/** A failed read (a short file, a dropped download) says so in the file format's own error. */
function asSafetensorsError(error: unknown, file: string, key?: string): unknown {
  return error instanceof FileError ? new SafetensorsError(error.reason, file, key) : error;
}
