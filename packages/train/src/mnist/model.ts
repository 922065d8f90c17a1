/**
 * The small CNN of the main job: two strided convolutions and two linear layers, ~30k parameters. The
 * 10-way head exists from the start; pretraining only ever shows it digits 0–4, so fine-tuning on 5–9
 * needs no new layer, only the adapter (and the head, saved with it).
 */
import { type Backend, Conv2d, fromHostTensor, Layer, Linear, ops, parseSafetensors, Random, type Tensor } from '@dorajs/core';
import { ModelFolderError } from '../errors.js';
import { MNIST_CLASSES, MNIST_SIDE } from './data.js';
import { assetFile, readSafetensors } from '#node-fs';

/** Where the shipped pretrained base lives (regenerate with `scripts/pretrain-mnist.mjs`). */
export const MNIST_BASE_FILE = assetFile('mnist-cnn-base.safetensors');

/** The layers DoRA targets by default (the head is trained in full through modulesToSave). */
export const MNIST_TARGET_MODULES = ['conv1', 'conv2', 'fc1'] as const;
export const MNIST_HEAD = 'head';

export class MnistCnn extends Layer {
  static override readonly typeName: string = 'MnistCnn';
  conv1: Conv2d;
  conv2: Conv2d;
  fc1: Linear;
  head: Linear;

  constructor(options: { backend: Backend; seed?: number }) {
    super();
    const random = new Random(options.seed ?? 0);
    const o = { backend: options.backend, random };
    this.conv1 = new Conv2d(1, 8, 5, { ...o, stride: 2 }); // 28 → 12
    this.conv2 = new Conv2d(8, 16, 3, { ...o, stride: 2 }); // 12 → 5
    this.fc1 = new Linear(16 * 5 * 5, 64, o);
    this.head = new Linear(64, MNIST_CLASSES, o);
  }

  forward(x: Tensor): Tensor {
    const n = x.shape[0]!;
    let h = ops.relu(this.conv1.forward(x));
    h = ops.relu(this.conv2.forward(h));
    h = ops.relu(this.fc1.forward(ops.reshape(h, [n, -1])));
    return this.head.forward(h);
  }
}

/** Input images must be [N, 1, 28, 28]. */
export function isMnistInput(x: Tensor): boolean {
  return x.rank === 4 && x.shape[1] === 1 && x.shape[2] === MNIST_SIDE && x.shape[3] === MNIST_SIDE;
}

/**
 * The pretrained base (digits 0–4) from `file` (default: the shipped asset; in Node a path) or from the
 * file's bytes (a page fetches MNIST_BASE_FILE, a URL there).
 */
export async function loadMnistBase(backend: Backend, source: string | Uint8Array = MNIST_BASE_FILE): Promise<MnistCnn> {
  const file = typeof source === 'string' ? source : '<memory>';
  const model = new MnistCnn({ backend });
  const contents = await (typeof source === 'string'
    ? readSafetensors(source)
    : Promise.resolve().then(() => parseSafetensors(source, file))
  ).catch((e: unknown) => {
    throw new ModelFolderError(`cannot read the MNIST base weights: ${(e as Error).message}`, file);
  });
  const values = new Map<string, Tensor>();
  for (const [key, host] of contents.tensors) values.set(key, fromHostTensor(host, backend, { file, key }));
  try {
    model.loadStateDict(values);
  } catch (e) {
    model.dispose();
    throw new ModelFolderError(`not an MnistCnn checkpoint: ${(e as Error).message}`, file);
  } finally {
    for (const v of values.values()) v.dispose();
  }
  return model;
}
