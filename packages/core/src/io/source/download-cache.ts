/**
 * A download cache for URL and Hub sources, as transformers.js keeps one: whole files by URL, so a model or
 * an adapter loaded twice is downloaded once. Pages keep files in the Cache API (`cacheStorageCache`) or
 * OPFS (`opfsCache`), Node in a folder (`directoryCache`, behind the `node` condition). A file enters the
 * cache only when every one of its bytes came back from the server and was written: a truncated or failed
 * download, or a load that stopped half way, leaves nothing behind. Entries are keyed by URL (a Hub
 * revision is part of it); `delete` or clearing the storage refreshes them.
 */
import { FileError } from '../../errors.js';
import { type DirectoryHandle, type FileHandle, opfsDirectory } from './browser-sources.js';
import { type ByteReader, blobReader } from './file-source.js';
import { defaultCacheDirectory, directoryCache as nodeDirectoryCache } from '#node-directory';

/** One file being written into a cache; visible to `get` only after `commit`. */
export interface CacheEntryWriter {
  /** `bytes` belong at `offset` (pieces may come in any order and overlap). */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** Publishes the entry; fails (and publishes nothing) unless bytes 0 … size-1 were all written. */
  commit(): Promise<void>;
  /** Drops what was written. */
  abort(): Promise<void>;
}

export interface DownloadCache {
  /** Where the files live (for messages). */
  readonly name: string;
  /** The cached file at `url`, or null. */
  get(url: string): Promise<ByteReader | null>;
  /** Starts writing the `size`-byte file at `url`. */
  begin(url: string, size: number): Promise<CacheEntryWriter>;
  delete(url: string): Promise<void>;
}

/** Which byte ranges have been seen: merged half-open intervals. */
export class Coverage {
  private readonly spans: [number, number][] = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    const next: [number, number][] = [];
    let s = start;
    let e = end;
    for (const [a, b] of this.spans) {
      if (b < s || a > e) next.push([a, b]);
      else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    next.push([s, e]);
    next.sort((x, y) => x[0] - y[0]);
    this.spans.splice(0, this.spans.length, ...next);
  }

  /** True when [0, size) is covered. */
  covers(size: number): boolean {
    return size === 0 || (this.spans.length === 1 && this.spans[0]![0] === 0 && this.spans[0]![1] >= size);
  }
}

/**
 * `inner` (a file being downloaded), with every byte read from it also written into `cache`; the entry is
 * committed once the reads have covered the whole file, and dropped when the reader is closed before that
 * or a read fails. Cache failures (a full disk, a quota) never fail the load: the entry is dropped.
 */
export function cachingReader(inner: ByteReader, url: string, cache: DownloadCache): ByteReader {
  let entry: Promise<CacheEntryWriter | null> | null = null;
  let finished = false;
  const coverage = new Coverage();
  const drop = async () => {
    finished = true;
    const writer = await entry;
    await writer?.abort().catch(() => {});
  };
  return {
    name: inner.name,
    size: inner.size,
    async read(offset, length) {
      let bytes: Uint8Array;
      try {
        bytes = await inner.read(offset, length);
      } catch (e) {
        if (!finished && entry) await drop();
        throw e;
      }
      if (!finished && length > 0) {
        entry ??= cache.begin(url, inner.size).catch(() => null);
        const writer = await entry;
        if (!writer) finished = true;
        else {
          try {
            await writer.write(offset, bytes);
            coverage.add(offset, offset + length);
            if (coverage.covers(inner.size)) {
              finished = true;
              await writer.commit();
            }
          } catch {
            await drop();
          }
        }
      }
      return bytes;
    },
    async close() {
      if (!finished && entry) await drop();
      await inner.close();
    },
  };
}

/** SHA-256 of `url` in hex: the entry's file name in OPFS and on disk. */
export async function cacheKey(url: string): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new FileError('a file cache needs crypto.subtle (a secure context)', url);
  const digest = new Uint8Array(await subtle.digest('SHA-256', new TextEncoder().encode(url)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Pieces written at offsets → one Blob of exactly `size` bytes, or an error if any byte is missing. */
function assemble(url: string, pieces: readonly { offset: number; blob: Blob }[], size: number): Blob {
  const sorted = [...pieces].sort((a, b) => a.offset - b.offset);
  const parts: Blob[] = [];
  let end = 0;
  for (const p of sorted) {
    if (p.offset > end) break;
    const from = end - p.offset;
    if (from < p.blob.size) {
      parts.push(from === 0 ? p.blob : p.blob.slice(from));
      end = p.offset + p.blob.size;
    }
  }
  if (end < size) throw new FileError(`cache entry incomplete: ${end} of ${size} bytes`, url);
  const blob = new Blob(parts);
  return blob.size === size ? blob : blob.slice(0, size);
}

interface CacheStorageLike {
  open(name: string): Promise<{
    match(url: string): Promise<Response | undefined>;
    put(url: string, response: Response): Promise<void>;
    delete(url: string): Promise<boolean>;
  }>;
}

/** The browser's Cache API (`caches`), in the cache named `name`: what transformers.js uses. */
export function cacheStorageCache(name = 'dorajs'): DownloadCache {
  const storage = (globalThis as { caches?: CacheStorageLike }).caches;
  const open = () => {
    if (!storage) throw new FileError('this environment has no Cache API (caches)', `cache:${name}`);
    return storage.open(name);
  };
  return {
    name: `Cache API '${name}'`,
    async get(url) {
      const res = await (await open()).match(url);
      return res ? blobReader(url, await res.blob()) : null;
    },
    async begin(url, size) {
      const pieces: { offset: number; blob: Blob }[] = [];
      return {
        write: async (offset, bytes) => {
          pieces.push({ offset, blob: new Blob([bytes as Uint8Array<ArrayBuffer>]) });
        },
        commit: async () => {
          const body = assemble(url, pieces, size);
          pieces.length = 0;
          const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size) };
          await (await open()).put(url, new Response(body, { headers }));
        },
        abort: async () => {
          pieces.length = 0;
        },
      };
    },
    async delete(url) {
      await (await open()).delete(url);
    },
  };
}

type MovableHandle = FileHandle & { move?(name: string): Promise<void> };
type Writable = Awaited<ReturnType<NonNullable<FileHandle['createWritable']>>> & {
  write(data: { type: 'write'; position: number; data: Uint8Array } | Blob): Promise<void>;
};

const notFound = (e: unknown) => (e as Error).name === 'NotFoundError' || (e as Error).name === 'TypeMismatchError';

/**
 * Files in the origin-private file system, under `folder`. An entry is written to `<key>.part` and renamed
 * to `<key>` on commit, so a reader never sees a partial file.
 */
export function opfsCache(folder = 'dorajs-cache'): DownloadCache {
  let dir: Promise<DirectoryHandle> | null = null;
  const root = () => (dir ??= opfsDirectory(folder, { create: true }));
  return {
    name: `OPFS /${folder}`,
    async get(url) {
      const key = await cacheKey(url);
      try {
        const handle = await (await root()).getFileHandle(key);
        return blobReader(url, await handle.getFile());
      } catch (e) {
        if (notFound(e)) return null;
        throw new FileError(`cannot read the cached copy (${(e as Error).message})`, url, { cause: e });
      }
    },
    async begin(url, size) {
      const key = await cacheKey(url);
      const d = await root();
      const part = `${key}.${Math.random().toString(36).slice(2)}.part`;
      const handle = (await d.getFileHandle(part, { create: true })) as MovableHandle;
      if (!handle.createWritable) throw new FileError('this browser cannot write OPFS files', url);
      const writable = (await handle.createWritable()) as Writable;
      const coverage = new Coverage();
      const remove = () => d.removeEntry?.(part).catch(() => {});
      return {
        write: async (offset, bytes) => {
          await writable.write({ type: 'write', position: offset, data: bytes });
          coverage.add(offset, offset + bytes.byteLength);
        },
        commit: async () => {
          if (!coverage.covers(size)) throw new FileError('cache entry incomplete', url);
          await writable.close();
          if ((await handle.getFile()).size !== size) {
            await remove();
            throw new FileError('cache entry has the wrong size', url);
          }
          if (handle.move) await handle.move(key);
          else {
            const target = await d.getFileHandle(key, { create: true });
            const w = await target.createWritable!();
            await w.write(await handle.getFile());
            await w.close();
            await remove();
          }
        },
        abort: async () => {
          await writable.abort?.().catch(() => {});
          await remove();
        },
      };
    },
    async delete(url) {
      await (await root()).removeEntry?.(await cacheKey(url)).catch((e: unknown) => {
        if (!notFound(e)) throw e;
      });
    },
  };
}

/**
 * The cache a loader uses when told `cache: 'default'`: a folder in Node (`$DORA_CACHE`, else
 * `~/.cache/dorajs`), the Cache API in a page (OPFS where there is no Cache API), else none.
 */
export function defaultCache(): DownloadCache | null {
  const dir = defaultCacheDirectory();
  if (dir !== null) return directoryCache(dir);
  if ((globalThis as { caches?: unknown }).caches) return cacheStorageCache();
  if ((globalThis as { navigator?: { storage?: { getDirectory?: unknown } } }).navigator?.storage?.getDirectory) return opfsCache();
  return null;
}

/**
 * Node: a cache in the folder `dir`, one file per URL (named by its SHA-256), written to a `.part` file and
 * renamed into place on commit. In a page this fails with a FileError (use the Cache API or OPFS).
 */
export function directoryCache(dir: string): DownloadCache {
  return nodeDirectoryCache(dir);
}
