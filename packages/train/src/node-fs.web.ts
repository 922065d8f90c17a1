/**
 * Browsers' side of the `#node-fs` import: the same names as node-fs.ts, each failing with one typed line
 * (folders on disk need Node). Paths are joined with '/', so error messages still name the file.
 */
import { ConfigError } from '@dorajs/core';
import type * as NodeFs from './node-fs.js';

function nodeOnly<F>(name: string): F {
  return (async (path?: unknown) => {
    throw new ConfigError(
      `${typeof path === 'string' ? `${path}: ` : ''}${name} needs a file system (Node); a page cannot use folders on disk`,
    );
  }) as F;
}

export const readSafetensors = nodeOnly<typeof NodeFs.readSafetensors>('reading a safetensors file');
export const saveSafetensors = nodeOnly<typeof NodeFs.saveSafetensors>('saving a safetensors file');
export const checkOutputPath = nodeOnly<typeof NodeFs.checkOutputPath>('checking an output folder');
export const replaceFile = nodeOnly<typeof NodeFs.replaceFile>('writing a file');
export const replaceFolder = nodeOnly<typeof NodeFs.replaceFolder>('writing a folder');
export const recoverOutput = nodeOnly<typeof NodeFs.recoverOutput>('cleaning up after a killed run');
export type FileSystem = NodeFs.FileSystem;
export const loadModel = nodeOnly<typeof NodeFs.loadModel>('loading a model folder');
export const copyFile = nodeOnly<typeof NodeFs.copyFile>('copying a file');
export const mkdir = nodeOnly<typeof NodeFs.mkdir>('creating a folder');
export const open = nodeOnly<typeof NodeFs.open>('opening a file');
export const readdir = nodeOnly<typeof NodeFs.readdir>('listing a folder');
export const readFile = nodeOnly<typeof NodeFs.readFile>('reading a file');
export const rename = nodeOnly<typeof NodeFs.rename>('renaming a file');
export const rm = nodeOnly<typeof NodeFs.rm>('removing a file');
export const stat = nodeOnly<typeof NodeFs.stat>('reading file status');

export function join(...parts: string[]): string {
  return parts.join('/').replace(/\/+/g, '/');
}

export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? (i === 0 ? '/' : '.') : path.slice(0, i);
}

export function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A file shipped in this package's assets/ folder, as a URL (bundlers such as Vite copy it). */
export function assetFile(name: string): string {
  return new URL(`../assets/${name}`, import.meta.url).href;
}
