/**
 * Everything training reads from or writes to disk (checkpoints, datasets, tokenizers, model folders), in
 * one module: the `node` condition of the `#node-fs` import. Browsers get node-fs.web.ts, whose functions
 * throw a typed error, so the Trainer bundles for a page and trains there without checkpoint folders.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export {
  checkOutputPath,
  type FileSystem,
  readSafetensors,
  recoverOutput,
  replaceFile,
  replaceFolder,
  saveSafetensors,
} from '@dorajs/core/node';
export { loadModel } from '@dorajs/models/node';
export { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
export { basename, dirname, join } from 'node:path';

/** `bytes` random bytes as hex: unique temporary names. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** A file shipped in this package's assets/ folder (this module sits one level below src/ or dist/). */
export function assetFile(name: string): string {
  return fileURLToPath(new URL(`../assets/${name}`, import.meta.url));
}
