import { backward, Parameter, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { causalLmLoss, classificationLoss, IGNORE_INDEX, LabelOutOfRangeError, shiftLabels } from '../src/index.js';
import { testBackend } from './helpers.js';

function logSoftmaxRow(row: number[]): number[] {
  const m = Math.max(...row);
  const z = Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) + m;
  return row.map((v) => v - z);
}

describe('shiftLabels', () => {
  it('targets position t with label t+1 and ignores the last position of each row', () => {
    const out = shiftLabels(Int32Array.from([1, 2, 3, 4, 5, 6]), 2, 3);
    expect(Array.from(out)).toEqual([2, 3, IGNORE_INDEX, 5, 6, IGNORE_INDEX]);
  });
});

describe('causalLmLoss', () => {
  it('equals the mean negative log-likelihood of the next token, skipping −100', async () => {
    const backend = await testBackend();
    const v = 4;
    const values = [0.1, 0.5, -1, 2, 1, 0, 0, 0, -0.3, 0.2, 0.9, -2, 0.4, 0.4, 0.1, 0, 1, 2, 3, 4, -1, -2, -3, 0];
    const logits = tensor(Float32Array.from(values), [2, 3, v], { backend });
    const labels = Int32Array.from([9, 3, 1, 9, IGNORE_INDEX, 2]);
    // Pairs (position → target): (0,0)→3, (0,1)→1, (1,0)→ignored, (1,1)→2
    const rows = [0, 1, 4].map((r) => values.slice(r * v, r * v + v));
    const targets = [3, 1, 2];
    const expected = -rows.reduce((s, row, i) => s + logSoftmaxRow(row)[targets[i]!]!, 0) / 3;
    const loss = causalLmLoss(logits, labels);
    expect((await loss.float32())[0]).toBeCloseTo(expected, 5);
    const halved = causalLmLoss(logits, labels, { normalizer: 6 });
    expect((await halved.float32())[0]).toBeCloseTo(expected / 2, 5);
  });

  it('names an out-of-vocabulary label', async () => {
    const backend = await testBackend();
    const logits = tensor(new Float32Array(2 * 2 * 3), [2, 2, 3], { backend });
    expect(() => causalLmLoss(logits, Int32Array.from([0, 1, 0, 7]))).toThrow(LabelOutOfRangeError);
  });
});

describe('classificationLoss', () => {
  it('is differentiable and matches the manual cross-entropy', async () => {
    const backend = await testBackend();
    const values = [1, 2, 0.5, -1, 0, 3];
    const logits = new Parameter(tensor(Float32Array.from(values), [2, 3], { backend }));
    const loss = classificationLoss(logits, Int32Array.from([1, 2]));
    const expected = -(logSoftmaxRow(values.slice(0, 3))[1]! + logSoftmaxRow(values.slice(3))[2]!) / 2;
    expect((await loss.float32())[0]).toBeCloseTo(expected, 5);
    backward(loss);
    const g = await logits.grad!.float32();
    // d/dlogits of the mean CE: (softmax − onehot) / N; each row sums to 0.
    expect(g[0]! + g[1]! + g[2]!).toBeCloseTo(0, 6);
    expect(g[1]!).toBeLessThan(0);
  });

  it('rejects a label outside [0, C) with a typed error naming it', async () => {
    const backend = await testBackend();
    const logits = tensor(new Float32Array(6), [2, 3], { backend });
    expect(() => classificationLoss(logits, Int32Array.from([0, 3]))).toThrow(/label 3 is outside \[0, 3\)/);
    expect(() => classificationLoss(logits, Int32Array.from([-2, 0]))).toThrow(LabelOutOfRangeError);
  });
});
