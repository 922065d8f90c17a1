/**
 * Where a model's or an adapter's files come from — a folder on disk (Node), a web server or the Hugging Face
 * Hub, files a user dropped or picked, a directory handle or the origin-private file system — behind one small
 * interface, so loaders read the same way everywhere: small files whole, safetensors one byte range (one
 * tensor) at a time, never a whole checkpoint in memory.
 */
import { FileError } from '../../errors.js';

/** One open file, read by byte ranges. */
export interface ByteReader {
  /** How errors name the file (a path or URL). */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`, or a FileError (core's) naming the file. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Optional: the `target.byteLength` bytes at `offset` written into `target`'s memory as they arrive, with
   * `read`'s errors — so a loader can read every piece of a checkpoint into one reused buffer instead of a
   * new one per read (the HTTP readers have it: the body is read straight into the buffer, and a page keeps
   * no dead response buffers waiting for GC). Returns the filled bytes, which may be a view of a new
   * ArrayBuffer over the same memory: the reader may take `target`'s buffer over (a BYOB stream read
   * transfers it, detaching `target`), so use the result, not `target`.
   */
  readInto?(offset: number, target: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A folder of named files, wherever it lives. */
export interface FileSource {
  /** The folder as errors name it (a path, a URL, 'org/name@revision', 'dropped folder'). */
  readonly name: string;
  /** What it is: 'directory' (on disk), 'http', 'files' (dropped or picked), 'handle', 'memory'. */
  readonly kind: 'directory' | 'http' | 'files' | 'handle' | 'memory';
  /** How errors name one of its files. */
  describe(file: string): string;
  /** The file, or null when the folder has none of that name (a 404, no entry); other failures throw FileError. */
  open(file: string): Promise<ByteReader | null>;
}

/** How far a load has come: bytes of weights read and tensors loaded so far, of the totals. */
export interface LoadProgress {
  readonly loadedBytes: number;
  readonly totalBytes: number;
  readonly loadedTensors: number;
  readonly totalTensors: number;
  /** The file being read. */
  readonly file: string;
}

export type ProgressCallback = (progress: LoadProgress) => void;

/** A small file (a config, an index) of at most `maxBytes` as UTF-8 text, or null when absent. */
export async function readSourceText(source: FileSource, file: string, maxBytes: number): Promise<string | null> {
  const reader = await source.open(file);
  if (!reader) return null;
  try {
    if (reader.size > maxBytes)
      throw new FileError(`is ${reader.size} bytes, over the ${maxBytes}-byte limit for this kind of file`, reader.name);
    const bytes = await reader.read(0, reader.size);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new FileError('is not valid UTF-8 text', reader.name);
    }
  } finally {
    await reader.close();
  }
}

export async function sourceHas(source: FileSource, file: string): Promise<boolean> {
  const reader = await source.open(file);
  await reader?.close();
  return reader !== null;
}

/** A ByteReader over bytes in memory. */
export function bytesReader(name: string, bytes: Uint8Array): ByteReader {
  return {
    name,
    size: bytes.byteLength,
    read: async (offset, length) => {
      if (offset < 0 || offset + length > bytes.byteLength) {
        throw new FileError(`read of ${length} bytes at ${offset} is past the end (${bytes.byteLength} bytes)`, name);
      }
      return bytes.subarray(offset, offset + length);
    },
    close: async () => {},
  };
}

/** A ByteReader over a Blob or File: slices are read on demand, the file is never loaded whole. */
export function blobReader(name: string, blob: Blob): ByteReader {
  return {
    name,
    size: blob.size,
    read: async (offset, length) => {
      if (offset < 0 || offset + length > blob.size) {
        throw new FileError(`read of ${length} bytes at ${offset} is past the end (${blob.size} bytes)`, name);
      }
      try {
        return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      } catch (e) {
        throw new FileError(`cannot read (${(e as Error).message})`, name, { cause: e });
      }
    },
    close: async () => {},
  };
}

/** Files held in memory by name (tests, generated adapters): bytes or text. */
export function memorySource(files: Readonly<Record<string, Uint8Array | string | Blob>>, name = '<memory>'): FileSource {
  const describe = (file: string) => `${name}/${file}`;
  return {
    name,
    kind: 'memory',
    describe,
    open: async (file) => {
      const value = Object.hasOwn(files, file) ? files[file] : undefined;
      if (value === undefined) return null;
      if (typeof value === 'string') return bytesReader(describe(file), new TextEncoder().encode(value));
      if (value instanceof Uint8Array) return bytesReader(describe(file), value);
      return blobReader(describe(file), value);
    },
  };
}
