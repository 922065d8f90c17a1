/**
 * The file-system calls dorajs's Node I/O makes, as one injectable object: every writer takes an optional
 * `fs` so tests can fail any call (ENOSPC, EIO, EACCES, EROFS) without root-defeated chmod tricks.
 */
import * as fsp from 'node:fs/promises';

export type FileSystem = Pick<
  typeof fsp,
  'open' | 'rename' | 'rm' | 'mkdir' | 'readdir' | 'lstat' | 'stat' | 'access' | 'copyFile' | 'realpath' | 'link'
>;

export const nodeFileSystem: FileSystem = {
  open: fsp.open,
  rename: fsp.rename,
  rm: fsp.rm,
  mkdir: fsp.mkdir,
  readdir: fsp.readdir,
  lstat: fsp.lstat,
  stat: fsp.stat,
  access: fsp.access,
  copyFile: fsp.copyFile,
  realpath: fsp.realpath,
  link: fsp.link,
};

/** The errno code of a Node system error, or undefined. */
export function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A one-line reason for an I/O failure: the errno code and Node's message, without stacks. */
export function ioReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\n[\s\S]*/, '').slice(0, 300);
}
