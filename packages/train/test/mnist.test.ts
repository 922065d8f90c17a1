import type { Backend } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  classificationAccuracy,
  collateDigits,
  LabelOutOfRangeError,
  loadMnistBase,
  MNIST_BASE_FILE,
  mnistSplit,
  ModelFolderError,
} from '../src/index.js';
import { mnistData, testBackend } from './helpers.js';

let backend: Backend;
beforeAll(async () => {
  backend = await testBackend();
});

describe('MNIST data', () => {
  it('loads the 10 000 real digits of the mnist package with a fixed per-class split', async () => {
    const digits = await mnistData();
    expect(digits.map((d) => d.length)).toEqual([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
    const a = mnistSplit(await mnistData(), [5, 6, 7, 8, 9]);
    const b = mnistSplit(await mnistData(), [5, 6, 7, 8, 9]);
    expect(a.test.length).toBe(172 + 202 + 214 + 188 + 195); // ⌊20%⌋ of each digit
    expect(a.train.length + a.test.length).toBe(863 + 1014 + 1070 + 944 + 978);
    expect(a.test[0]!.pixels).toBe(b.test[0]!.pixels);
    // Train and test never share an image.
    const trainSet = new Set(a.train.map((e) => e.pixels));
    expect(a.test.some((e) => trainSet.has(e.pixels))).toBe(false);
    expect(mnistSplit(await mnistData(), [3], { perClassLimit: 10 }).train).toHaveLength(10);
  });

  it('rejects a label outside the 10 classes', async () => {
    const collate = collateDigits(backend);
    expect(() => collate([{ pixels: new Float32Array(784), label: 10 }])).toThrow(LabelOutOfRangeError);
    const data = await mnistData();
    expect(() => mnistSplit(data, [12])).toThrow(LabelOutOfRangeError);
  });
});

describe('the shipped pretrained base', () => {
  it('classifies held-out digits 0–4 at ≥ 95% and knows nothing of 5–9', async () => {
    const model = await loadMnistBase(backend);
    model.eval();
    const collate = collateDigits(backend);
    const forward = (x: Parameters<typeof model.forward>[0]) => model.forward(x);
    const seen = mnistSplit(await mnistData(), [0, 1, 2, 3, 4]);
    const unseen = mnistSplit(await mnistData(), [5, 6, 7, 8, 9]);
    expect(await classificationAccuracy(seen.test, { forward, collate })).toBeGreaterThanOrEqual(0.95);
    expect(await classificationAccuracy(unseen.test, { forward, collate })).toBeLessThan(0.05);
    const meta = (await readSafetensors(MNIST_BASE_FILE)).metadata;
    expect(meta.digits).toBe('0,1,2,3,4');
    model.dispose();
  });

  it('names the file when it is not an MnistCnn checkpoint', async () => {
    await expect(loadMnistBase(backend, '/nonexistent/base.safetensors')).rejects.toThrow(ModelFolderError);
  });
});
