/** Accuracy of a classifier over a dataset, batch by batch, without gradients. */
import { noGrad, ops, type Tensor, tidy } from '@dorajs/core';
import type { Batch } from './trainer.js';

export interface AccuracyOptions<E> {
  readonly forward: (input: Tensor) => Tensor;
  readonly collate: (examples: readonly E[]) => Batch;
  readonly batchSize?: number;
}

/** Fraction of examples whose arg-max logit equals the label. The caller sets eval mode. */
export async function classificationAccuracy<E>(examples: readonly E[], options: AccuracyOptions<E>): Promise<number> {
  if (examples.length === 0) return 0;
  const size = options.batchSize ?? 256;
  let correct = 0;
  for (let s = 0; s < examples.length; s += size) {
    const batch = options.collate(examples.slice(s, s + size));
    try {
      const predicted = tidy(() => noGrad(() => ops.argMax(options.forward(batch.input))));
      const p = (await predicted.data()) as Int32Array;
      predicted.dispose();
      for (let i = 0; i < p.length; i++) if (p[i] === batch.labels[i]) correct++;
    } finally {
      batch.input.dispose();
    }
  }
  return correct / examples.length;
}
