/**
 * cachingReader's rule: an entry is committed only once reads covered every byte; a failed read, or a close
 * before that, drops it; a cache that fails never fails the read. Checked against an in-memory cache.
 */
import { describe, expect, it } from 'vitest';
import { type ByteReader, bytesReader, type CacheEntryWriter, cachingReader, type DownloadCache, FileError } from '../../src/index.js';

function memoryCache(options: { failWrites?: boolean } = {}) {
  const entries = new Map<string, Uint8Array>();
  const log: string[] = [];
  const cache: DownloadCache = {
    name: 'memory',
    get: async (url) => {
      const bytes = entries.get(url);
      return bytes ? bytesReader(url, bytes) : null;
    },
    begin: async (url, size): Promise<CacheEntryWriter> => {
      const data = new Uint8Array(size);
      log.push('begin');
      return {
        write: async (offset, bytes) => {
          if (options.failWrites) throw new Error('disk full');
          data.set(bytes, offset);
        },
        commit: async () => {
          log.push('commit');
          entries.set(url, data);
        },
        abort: async () => {
          log.push('abort');
        },
      };
    },
    delete: async (url) => {
      entries.delete(url);
    },
  };
  return { cache, entries, log };
}

const FILE = Uint8Array.from({ length: 100 }, (_, i) => i);

/** A reader over FILE whose reads past `failAt` fail, as a dropped connection does. */
function network(failAt = Infinity): ByteReader {
  const inner = bytesReader('http://x/f', FILE);
  return {
    ...inner,
    read: async (offset, length) => {
      if (offset + length > failAt) throw new FileError('truncated download', 'http://x/f');
      return inner.read(offset, length);
    },
  };
}

describe('cachingReader', () => {
  it('commits once reads cover the file, in any order and with overlaps', async () => {
    const { cache, entries, log } = memoryCache();
    const r = cachingReader(network(), 'http://x/f', cache);
    await r.read(0, 8);
    await r.read(50, 50);
    expect(entries.size).toBe(0);
    await r.read(4, 60);
    expect(log).toEqual(['begin', 'commit']);
    expect(entries.get('http://x/f')).toEqual(FILE);
    await r.close();
    expect(log).toEqual(['begin', 'commit']);
  });

  it('a failed read drops the entry and still throws', async () => {
    const { cache, entries, log } = memoryCache();
    const r = cachingReader(network(60), 'http://x/f', cache);
    await r.read(0, 50);
    await expect(r.read(50, 50)).rejects.toThrow('truncated download');
    await r.close();
    expect(log).toEqual(['begin', 'abort']);
    expect(entries.size).toBe(0);
  });

  it('closing before every byte was read drops the entry', async () => {
    const { cache, entries, log } = memoryCache();
    const r = cachingReader(network(), 'http://x/f', cache);
    await r.read(0, 99);
    await r.close();
    expect(log).toEqual(['begin', 'abort']);
    expect(entries.size).toBe(0);
  });

  it('a cache that fails to write never fails the read', async () => {
    const { cache, entries } = memoryCache({ failWrites: true });
    const r = cachingReader(network(), 'http://x/f', cache);
    expect(await r.read(0, 100)).toEqual(FILE);
    await r.close();
    expect(entries.size).toBe(0);
  });
});
