/**
 * Files on a web server (a Hugging Face Hub repository is one): each safetensors tensor is fetched with its own
 * HTTP Range request after the header, so a page never holds more than one tensor of a checkpoint. A server
 * that ignores Range gets its body streamed forward and read tensor by tensor (in file order; a backwards read
 * starts a new request). 404 means "no such file"; any other failure, and a body shorter than announced, is a
 * FileError naming the URL — nothing truncated is ever handed to a loader.
 */
import { FileError } from '../../errors.js';
import { cachingReader, type DownloadCache, defaultCache } from './download-cache.js';
import { type ByteReader, bytesReader, type FileSource } from './file-source.js';

export interface HttpSourceOptions {
  /** Extra request headers (an Authorization header for private files). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The fetch to use (default: globalThis.fetch). */
  readonly fetch?: typeof fetch;
  /** Bytes asked for by a file's first request: enough for most safetensors headers (default 256 KiB). */
  readonly probeBytes?: number;
  /**
   * Keep downloaded files and use them instead of downloading again: a DownloadCache (`cacheStorageCache()`,
   * `opfsCache()`, `directoryCache(dir)`), or 'default' for `defaultCache()`. Default: no cache.
   */
  readonly cache?: DownloadCache | 'default' | null;
}

export interface HubSourceOptions extends Omit<HttpSourceOptions, 'headers'> {
  /** Branch, tag or commit (default 'main'). */
  readonly revision?: string;
  /** The Hub's address (default 'https://huggingface.co'; a mirror or a test server). */
  readonly endpoint?: string;
  /** A Hugging Face access token, for gated and private repositories. */
  readonly accessToken?: string;
}

const DEFAULT_PROBE = 256 * 1024;

/** The files under `baseUrl` (a folder URL; a trailing slash is added). */
export function httpSource(baseUrl: string | URL, options: HttpSourceOptions = {}, name?: string): FileSource {
  const base = new URL(baseUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new FileError('only http(s) URLs can be loaded', base.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const describe = (file: string) => new URL(file, base).href;
  // Range readers hold no connection: a file checked for existence and then opened is probed once.
  const rangeReaders = new Map<string, ByteReader>();
  const cache = options.cache === 'default' ? defaultCache() : (options.cache ?? null);
  const openNetwork = async (file: string) => {
    const known = rangeReaders.get(file);
    if (known) return known;
    const reader = await openHttpFile(describe(file), options);
    if (reader && RANGE_READERS.has(reader)) rangeReaders.set(file, reader);
    return reader;
  };
  return {
    name: name ?? base.href,
    kind: 'http',
    describe,
    open: async (file) => {
      if (!cache) return openNetwork(file);
      const url = describe(file);
      // A cache that cannot be read is a miss, not a failed load.
      const hit = await cache.get(url).catch(() => null);
      if (hit) return hit;
      const reader = await openNetwork(file);
      return reader && cachingReader(reader, url, cache);
    },
  };
}

/** A Hugging Face Hub model repository, 'org/name' (files at `<endpoint>/<id>/resolve/<revision>/`). */
export function hubSource(id: string, options: HubSourceOptions = {}): FileSource {
  const revision = options.revision ?? 'main';
  const endpoint = (options.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const headers = options.accessToken ? { authorization: `Bearer ${options.accessToken}` } : undefined;
  const path = id.split('/').map(encodeURIComponent).join('/');
  return httpSource(
    `${endpoint}/${path}/resolve/${encodeURIComponent(revision)}/`,
    { ...options, ...(headers ? { headers } : {}) },
    `${id}@${revision}`,
  );
}

async function request(url: string, options: HttpSourceOptions, range?: [number, number]): Promise<Response> {
  const doFetch = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { ...options.headers };
  if (range) headers.range = `bytes=${range[0]}-${range[1]}`;
  try {
    return await doFetch(url, { headers });
  } catch (e) {
    throw new FileError(`cannot fetch (${(e as Error).message})`, url, { cause: e });
  }
}

function statusError(url: string, res: Response): FileError {
  const hint = res.status === 401 || res.status === 403 ? ' (a gated or private repository needs an access token)' : '';
  return new FileError(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${hint}`, url);
}

/** The whole body, checked against Content-Length (a dropped connection is an error, not a short file). */
async function wholeBody(url: string, res: Response, expected?: number): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new FileError(`the download failed (${(e as Error).message})`, url, { cause: e });
  }
  const announced = expected ?? contentLength(res);
  if (announced !== undefined && bytes.byteLength !== announced) {
    throw new FileError(`truncated download: ${bytes.byteLength} of ${announced} bytes`, url);
  }
  return bytes;
}

/**
 * The body written into `target`'s memory as it arrives, checked to be exactly `target.byteLength` bytes
 * long as wholeBody checks Content-Length. A byte stream (fetch bodies in browsers and Node) is read with a
 * BYOB reader straight into that memory, which transfers `target`'s buffer: the result is a view of the
 * buffer that comes back. Any other body is read whole and copied.
 */
async function bodyInto(url: string, res: Response, target: Uint8Array): Promise<Uint8Array> {
  const length = target.byteLength;
  let reader: ReadableStreamBYOBReader | null = null;
  try {
    reader = res.body?.getReader({ mode: 'byob' }) ?? null;
  } catch {
    reader = null;
  }
  if (!reader) {
    target.set(await wholeBody(url, res, length));
    return target;
  }
  let filled = 0;
  let out = target;
  try {
    // Up to `length` bytes into the memory, then one more read that must find the end.
    for (let r: { done: boolean; value?: Uint8Array }; ; ) {
      r = await reader.read(filled < length ? new Uint8Array(out.buffer, out.byteOffset + filled, length - filled) : new Uint8Array(1));
      if (r.done || !r.value) {
        if (r.value && filled < length) out = new Uint8Array(r.value.buffer, r.value.byteOffset - filled, length);
        break;
      }
      if (filled === length) throw new FileError(`truncated download: more than the ${length} bytes asked for`, url);
      out = new Uint8Array(r.value.buffer, r.value.byteOffset - filled, length);
      filled += r.value.byteLength;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e instanceof FileError ? e : new FileError(`the download failed (${(e as Error).message})`, url, { cause: e });
  }
  if (filled !== length) throw new FileError(`truncated download: ${filled} of ${length} bytes`, url);
  return out;
}

function contentLength(res: Response): number | undefined {
  const v = res.headers.get('content-length');
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}

async function openHttpFile(url: string, options: HttpSourceOptions): Promise<ByteReader | null> {
  const probe = options.probeBytes ?? DEFAULT_PROBE;
  const res = await request(url, options, [0, probe - 1]);
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    return null;
  }
  if (res.status === 416) {
    // An empty file cannot satisfy any range.
    await res.body?.cancel();
    return bytesReader(url, new Uint8Array(0));
  }
  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    if (!m || Number(m[1]) !== 0) throw new FileError(`unusable Content-Range '${res.headers.get('content-range')}'`, url);
    const size = Number(m[3]);
    const head = await wholeBody(url, res, Number(m[2]) + 1);
    return rangeReader(url, options, size, head);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw statusError(url, res);
  }
  // The server ignored Range: stream the body instead of buffering it.
  const size = contentLength(res);
  if (size === undefined || !res.body) return bytesReader(url, await wholeBody(url, res));
  return streamReader(url, options, size, res);
}

function checkRange(url: string, size: number, offset: number, length: number): void {
  if (!(offset >= 0 && length >= 0 && offset + length <= size)) {
    throw new FileError(`read of ${length} bytes at ${offset} is past the end (${size} bytes)`, url);
  }
}

const RANGE_READERS = new WeakSet<ByteReader>();

/** Range requests per read; the first request's bytes serve reads inside them (the header). */
function rangeReader(url: string, options: HttpSourceOptions, size: number, head: Uint8Array): ByteReader {
  const rangeRequest = async (offset: number, length: number): Promise<Response> => {
    const res = await request(url, options, [offset, offset + length - 1]);
    if (res.status !== 206) {
      await res.body?.cancel();
      throw res.ok ? new FileError(`the server stopped honouring Range requests (HTTP ${res.status})`, url) : statusError(url, res);
    }
    return res;
  };
  const reader: ByteReader = {
    name: url,
    size,
    async read(offset, length) {
      checkRange(url, size, offset, length);
      if (offset + length <= head.byteLength) return head.slice(offset, offset + length);
      if (length === 0) return new Uint8Array(0);
      return wholeBody(url, await rangeRequest(offset, length), length);
    },
    async readInto(offset, target) {
      const length = target.byteLength;
      checkRange(url, size, offset, length);
      if (offset + length <= head.byteLength) target.set(head.subarray(offset, offset + length));
      else if (length > 0) return bodyInto(url, await rangeRequest(offset, length), target);
      return target;
    },
    close: async () => {},
  };
  RANGE_READERS.add(reader);
  return reader;
}

/** A forward-only reader over a streamed body; reading backwards fetches the body again. */
function streamReader(url: string, options: HttpSourceOptions, size: number, first: Response): ByteReader {
  let body: ReadableStreamDefaultReader<Uint8Array> | null = first.body!.getReader();
  let position = 0;
  let pending: Uint8Array = new Uint8Array(0);
  const restart = async () => {
    await body?.cancel().catch(() => {});
    const res = await request(url, options);
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw statusError(url, res);
    }
    body = res.body.getReader();
    position = 0;
    pending = new Uint8Array(0);
  };
  const nextChunk = async (): Promise<Uint8Array> => {
    let r: { done: boolean; value?: Uint8Array };
    try {
      r = await body!.read();
    } catch (e) {
      throw new FileError(`the download failed after ${position} of ${size} bytes (${(e as Error).message})`, url, { cause: e });
    }
    if (r.done || !r.value) throw new FileError(`truncated download: the body ended after ${position} of ${size} bytes`, url);
    return r.value;
  };
  const readInto = async (offset: number, out: Uint8Array): Promise<Uint8Array> => {
    const length = out.byteLength;
    checkRange(url, size, offset, length);
    if (offset < position) await restart();
    // Skip to offset, keeping nothing of what lies before it.
    while (position + pending.byteLength <= offset) {
      position += pending.byteLength;
      pending = await nextChunk();
    }
    pending = pending.subarray(offset - position);
    position = offset;
    let filled = 0;
    while (filled < length) {
      if (pending.byteLength === 0) pending = await nextChunk();
      const n = Math.min(length - filled, pending.byteLength);
      out.set(pending.subarray(0, n), filled);
      pending = pending.subarray(n);
      filled += n;
      position += n;
    }
    return out;
  };
  return {
    name: url,
    size,
    async read(offset, length) {
      checkRange(url, size, offset, length);
      const out = new Uint8Array(length);
      await readInto(offset, out);
      return out;
    },
    readInto,
    async close() {
      await body?.cancel().catch(() => {});
      body = null;
    },
  };
}
