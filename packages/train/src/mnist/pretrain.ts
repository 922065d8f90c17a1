/**
 * Pretraining of the shipped base: the CNN trained in full on digits 0–4 only. Deterministic for a given
 * seed and backend; `scripts/pretrain-mnist.mjs` runs it and writes the asset.
 */
import type { Backend } from '@dorajs/core';
import { toHostTensor } from '@dorajs/core';
import { classificationAccuracy } from '../evaluate.js';
import { Trainer, type StepProgress } from '../trainer.js';
import { collateDigits, type DigitExample, type MnistDigits, mnistSplit } from './data.js';
import { MnistCnn } from './model.js';
import { saveSafetensors } from '#node-fs';

export const PRETRAIN_DIGITS = [0, 1, 2, 3, 4] as const;

export interface PretrainOptions {
  readonly backend: Backend;
  /** The images (readMnistDigits / digitsFromJson). */
  readonly data: MnistDigits;
  readonly seed?: number;
  readonly maxSteps?: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly onStepEnd?: (p: StepProgress) => void;
}

export interface PretrainResult {
  readonly model: MnistCnn;
  /** Held-out accuracy on digits 0–4. */
  readonly accuracy: number;
  readonly metrics: Readonly<Record<string, number>>;
}

export async function pretrainMnistBase(options: PretrainOptions): Promise<PretrainResult> {
  const { backend } = options;
  const seed = options.seed ?? 0;
  const split = mnistSplit(options.data, PRETRAIN_DIGITS);
  const model = new MnistCnn({ backend, seed });
  const collate = collateDigits(backend);
  const trainer = new Trainer<DigitExample>({
    model,
    objective: 'classification',
    trainDataset: split.train,
    collate,
    args: { maxSteps: options.maxSteps ?? 1000, batchSize: options.batchSize ?? 32, lr: options.lr ?? 3e-3, warmupSteps: 20, seed },
    ...(options.onStepEnd ? { callbacks: { onStepEnd: options.onStepEnd } } : {}),
  });
  const out = await trainer.train();
  trainer.dispose();
  model.eval();
  const accuracy = await classificationAccuracy(split.test, { forward: (x) => model.forward(x), collate });
  return { model, accuracy, metrics: out.metrics };
}

/** Writes the base weights with how they were made in the metadata. */
export async function saveMnistBase(file: string, result: PretrainResult, provenance: Readonly<Record<string, string>>): Promise<void> {
  const tensors = new Map<string, Awaited<ReturnType<typeof toHostTensor>>>();
  for (const [name, p] of result.model.stateDict()) tensors.set(name, await toHostTensor(p));
  await saveSafetensors(file, tensors, {
    format: 'pt',
    digits: PRETRAIN_DIGITS.join(','),
    heldout_accuracy: result.accuracy.toFixed(4),
    ...provenance,
  });
}
