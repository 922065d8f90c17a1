/**
 * One rule for every loader (transformers.js users expect the same): a FileSource, a directory handle or a
 * File list is used as is; a string is a folder on disk if it exists (Node) or looks like a path, else a URL
 * if it is an http(s) URL, else a Hugging Face Hub id ('org/name').
 */
import {
  type DirectoryHandle,
  directoryHandleSource,
  fileListSource,
  isDirectoryHandle,
  isFileList,
  type NamedBlob,
} from './browser-sources.js';
import { FileError } from '../../errors.js';
import type { FileSource } from './file-source.js';
import { type HubSourceOptions, httpSource, hubSource } from './http-source.js';
import { directorySource, existingDirectory } from '#node-directory';

/** Anything a model or an adapter can be loaded from. */
export type SourceInput = string | URL | FileSource | DirectoryHandle | ArrayLike<NamedBlob>;

/** How remote sources are reached (the Hub's revision, endpoint and token; a custom fetch). */
export type SourceOptions = HubSourceOptions;

const HUB_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

export function isFileSource(x: unknown): x is FileSource {
  return (
    typeof x === 'object' && x !== null && typeof (x as FileSource).open === 'function' && typeof (x as FileSource).describe === 'function'
  );
}

function looksLikePath(s: string): boolean {
  return /^(\/|\.{1,2}([/\\]|$)|~|[A-Za-z]:[\\/])/.test(s) || s.includes('\\');
}

export async function resolveSource(input: SourceInput, options: SourceOptions = {}): Promise<FileSource> {
  if (isFileSource(input)) return input;
  if (input instanceof URL) return httpSource(input, options);
  if (isDirectoryHandle(input)) return directoryHandleSource(input);
  if (typeof input !== 'string') {
    if (isFileList(input)) return fileListSource(input);
    throw new FileError('expected a path, a URL, a Hub id, a FileSource, a directory handle or a list of Files', String(input));
  }
  if (input === '') throw new FileError('an empty string names no folder, URL or Hub id', "''");
  if (looksLikePath(input)) return directorySource(input);
  if (/^https?:\/\//i.test(input)) return httpSource(input, options);
  const local = await existingDirectory(input);
  if (local) return local;
  if (HUB_ID.test(input)) return hubSource(input, options);
  throw new FileError('is not an existing folder, an http(s) URL or a Hugging Face Hub id (org/name)', input);
}
