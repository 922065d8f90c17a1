import { type Backend, Dropout, Layer, Linear, ops, Random, ReLU, Sequential, type Tensor, tensor } from '@dorajs/core';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type Batch, type DigitExample, readMnistDigits } from '../src/index.js';

let shared: Promise<Backend> | null = null;

/** One backend for the whole test file (starting one is not free). */
export function testBackend(): Promise<Backend> {
  shared ??= Promise.resolve(createCpuBackend());
  return shared;
}

export interface Example {
  readonly x: Float32Array;
  readonly label: number;
}

/** Linearly separable-ish blobs: class c centred at a fixed random point. */
export function blobs(n: number, features: number, classes: number, seed: number): Example[] {
  const r = new Random(seed);
  const centres = Array.from({ length: classes }, () => r.fillNormal(features, 0, 2));
  return Array.from({ length: n }, (_, i) => {
    const label = i % classes;
    const x = r.fillNormal(features, 0, 1);
    for (let j = 0; j < features; j++) x[j]! += centres[label]![j]!;
    return { x, label };
  });
}

export function collateFor(backend: Backend, features: number) {
  return (examples: readonly Example[]): Batch => {
    const flat = new Float32Array(examples.length * features);
    examples.forEach((e, i) => flat.set(e.x, i * features));
    return {
      input: tensor(flat, [examples.length, features], { backend }),
      labels: Int32Array.from(examples, (e) => e.label),
      size: examples.length,
    };
  };
}

/** A two-layer MLP with dropout (its own generator), so resume must restore RNG state too. */
export class Mlp extends Layer {
  net: Sequential;
  constructor(backend: Backend, features: number, hidden: number, classes: number, seed: number, dropout = 0.1) {
    super();
    const random = new Random(seed);
    this.net = new Sequential(
      new Linear(features, hidden, { backend, random }),
      new ReLU(),
      new Dropout(dropout, new Random(seed + 1)),
      new Linear(hidden, classes, { backend, random }),
    );
  }
  forward(x: Tensor): Tensor {
    return this.net.forward(x);
  }
}

/** Exact bytes of every parameter, by name. */
export async function snapshot(model: Layer): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, p] of model.namedParameters()) out.set(n, Float32Array.from(await p.float32()));
  return out;
}

export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.length === ub.length && ua.every((v, i) => v === ub[i]);
}

export { ops };

let mnist: Promise<DigitExample[][]> | null = null;
/** The `mnist` package's images (a devDependency here: the library takes the data as a parameter). */
export function mnistData(): Promise<DigitExample[][]> {
  mnist ??= readMnistDigits(join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits'));
  return mnist;
}
