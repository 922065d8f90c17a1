/**
 * The two objectives the Trainer knows, with Hugging Face's conventions: causal-LM cross-entropy on
 * labels shifted by one (the model predicts token t+1 at position t; −100 is ignored) and classification
 * cross-entropy. Both can be normalised by a caller-given count instead of their own, so gradient
 * accumulation over micro-batches of unequal size gives the same gradient as one large batch (what
 * transformers' Trainer does with `num_items_in_batch`).
 */
import { ops, ShapeError, type Tensor } from '@dorajs/core';
import { LabelOutOfRangeError } from './errors.js';

export const IGNORE_INDEX = -100;

export interface LossOptions {
  /** Divide the summed loss by this instead of by the number of counted targets. */
  readonly normalizer?: number;
}

/** The targets for position t are the labels of t+1; the last position of every row is ignored. */
export function shiftLabels(labels: Int32Array, batch: number, seqLen: number): Int32Array {
  if (labels.length !== batch * seqLen) {
    throw new ShapeError(`shiftLabels: ${labels.length} labels do not fill [${batch}, ${seqLen}]`);
  }
  const out = new Int32Array(labels.length).fill(IGNORE_INDEX);
  for (let b = 0; b < batch; b++) {
    const row = b * seqLen;
    out.set(labels.subarray(row + 1, row + seqLen), row);
  }
  return out;
}

/** Number of targets that count (not the ignore index). */
export function countTargets(targets: Int32Array): number {
  let n = 0;
  for (const t of targets) if (t !== IGNORE_INDEX) n++;
  return n;
}

function normalise(meanLoss: Tensor, counted: number, options: LossOptions): Tensor {
  if (options.normalizer === undefined) return meanLoss;
  return ops.mulScalar(meanLoss, options.normalizer > 0 ? counted / options.normalizer : 0);
}

/** Throws a LabelOutOfRangeError naming the first label outside [0, numClasses) (ignore index allowed). */
export function checkLabels(labels: Int32Array, numClasses: number, where: string): void {
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i]!;
    if (t !== IGNORE_INDEX && (t < 0 || t >= numClasses || !Number.isInteger(t))) {
      throw new LabelOutOfRangeError(t, numClasses, `${where} (example ${i})`);
    }
  }
}

/** Cross-entropy of logits [N, C] against class labels [N]; mean over counted labels by default. */
export function classificationLoss(logits: Tensor, labels: Int32Array, options: LossOptions = {}): Tensor {
  if (logits.rank !== 2) throw new ShapeError(`classificationLoss: logits must be [N, C], got [${logits.shape.join(', ')}]`);
  checkLabels(labels, logits.shape[1]!, 'classificationLoss');
  return normalise(ops.crossEntropy(logits, labels, IGNORE_INDEX), countTargets(labels), options);
}

/**
 * Causal-LM cross-entropy: logits [B, T, V], labels [B·T] (usually the input ids, with −100 where a
 * token must not be predicted, e.g. padding). Labels are shifted here, as transformers does.
 */
export function causalLmLoss(logits: Tensor, labels: Int32Array, options: LossOptions = {}): Tensor {
  if (logits.rank !== 3) throw new ShapeError(`causalLmLoss: logits must be [B, T, V], got [${logits.shape.join(', ')}]`);
  const [b, t, v] = logits.shape as [number, number, number];
  const targets = shiftLabels(labels, b, t);
  checkLabels(targets, v, 'causalLmLoss');
  const flat = ops.reshape(logits, [b * t, v]);
  return normalise(ops.crossEntropy(flat, targets, IGNORE_INDEX), countTargets(targets), options);
}
