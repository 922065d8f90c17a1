/**
 * A file system that fails on cue, for tests of the atomic writers: the N-th counted call (a write, an
 * fsync, a rename, a mkdir, an open for writing) throws a Node-style system error with the given code.
 * Tests run as root, where chmod does not stop a write; injecting EACCES/EROFS is the honest way to see
 * what a user without permission, or on a read-only mount, gets.
 */
import type { FileHandle } from 'node:fs/promises';
import { type FileSystem, nodeFileSystem } from './file-system.js';

export type FaultedCall = 'open' | 'write' | 'sync' | 'rename' | 'mkdir';

export interface FaultPlan {
  /** 1-based index of the counted call that fails; Infinity (default) fails none and just counts. */
  readonly failAt?: number;
  /** errno code to raise, e.g. 'ENOSPC', 'EIO', 'EACCES', 'EROFS'. */
  readonly code?: string;
  /**
   * Called at the fault point, before the call is made and before the error is thrown, with the call
   * (`kind path`). A kill test's driver passes `() => process.kill(process.pid, 'SIGKILL')` here, so the
   * process dies exactly before the N-th write, fsync, rename, mkdir or open.
   */
  readonly onFault?: (call: string) => void;
}

export interface FaultyFileSystem {
  readonly fs: FileSystem;
  /** Every counted call so far, as `kind path`. */
  readonly calls: string[];
  /** Whether the planned fault has fired. */
  readonly fired: () => boolean;
}

export function faultyFileSystem(plan: FaultPlan = {}, base: FileSystem = nodeFileSystem): FaultyFileSystem {
  const calls: string[] = [];
  let fired = false;
  const count = (kind: FaultedCall, path: string) => {
    calls.push(`${kind} ${path}`);
    if (calls.length === (plan.failAt ?? Number.POSITIVE_INFINITY)) {
      fired = true;
      plan.onFault?.(`${kind} ${path}`);
      const code = plan.code ?? 'EIO';
      const error = new Error(`${code}: injected fault, ${kind} '${path}'`) as NodeJS.ErrnoException;
      error.code = code;
      error.syscall = kind;
      error.path = path;
      throw error;
    }
  };
  const wrapHandle = (handle: FileHandle, path: string): FileHandle =>
    new Proxy(handle, {
      get(target, prop, receiver) {
        if (prop === 'write' || prop === 'sync' || prop === 'writeFile') {
          return (...args: unknown[]) => {
            try {
              count(prop === 'sync' ? 'sync' : 'write', path);
            } catch (error) {
              return Promise.reject(error);
            }
            return (target[prop] as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  const fs: FileSystem = {
    ...base,
    open: (async (path: string, flags?: string | number, mode?: number) => {
      const writing = typeof flags === 'string' && /[wa+]/.test(flags);
      if (writing) count('open', String(path));
      const handle = await base.open(path, flags, mode);
      return wrapHandle(handle, String(path));
    }) as FileSystem['open'],
    rename: (async (from: string, to: string) => {
      count('rename', `${String(from)} -> ${String(to)}`);
      return base.rename(from, to);
    }) as FileSystem['rename'],
    mkdir: (async (path: string, options?: object) => {
      count('mkdir', String(path));
      return base.mkdir(path, options as never);
    }) as FileSystem['mkdir'],
  };
  return { fs, calls, fired: () => fired };
}

/**
 * The 1-based call indices worth failing from a counted run: the first and last of each run of identical
 * calls (a file written in 30 chunks fails on its first and last write, not on all 30 — the code path is
 * the same), so a full sweep stays cheap.
 */
export function faultPoints(calls: readonly string[]): number[] {
  const points: number[] = [];
  for (let i = 0; i < calls.length; i++) {
    if (calls[i] !== calls[i - 1] || calls[i] !== calls[i + 1]) points.push(i + 1);
  }
  return points;
}
