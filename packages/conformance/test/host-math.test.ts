/** The float64 references are what the suite trusts: check them against values worked out by hand. */
import { describe, expect, it } from 'vitest';
import {
  broadcastIndices,
  convFilterGradHost,
  convHost,
  convInputGradHost,
  erfHost,
  geluHost,
  matmulHost,
  reduceHost,
  softmaxHost,
} from '../src/host-math.js';

const P = { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 } as const;

describe('host references', () => {
  it('matmul with transposes and broadcast batches', () => {
    expect(Array.from(matmulHost([1, 2, 3, 4, 5, 6], [2, 3], [7, 8, 9, 10, 11, 12], [3, 2]).value)).toEqual([58, 64, 139, 154]);
    // aᵀ with a stored [3, 2]: the same product as above
    expect(Array.from(matmulHost([1, 4, 2, 5, 3, 6], [3, 2], [7, 8, 9, 10, 11, 12], [3, 2], true).value)).toEqual([58, 64, 139, 154]);
    const batched = matmulHost([1, 2], [2, 1, 1, 1], [10, 20, 30], [3, 1, 1]);
    expect(batched.shape).toEqual([2, 3, 1, 1]);
    expect(Array.from(batched.value)).toEqual([10, 20, 30, 20, 40, 60]);
    expect(Array.from(matmulHost([1, -2], [1, 2], [3, 4], [2, 1]).magnitude)).toEqual([11]);
  });

  it('conv2d by definition: a 2×2 kernel over a 3×3 image, with stride, padding and groups', () => {
    const x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const w = [1, 0, 0, -1];
    expect(Array.from(convHost(x, [1, 1, 3, 3], w, [1, 1, 2, 2], P).value)).toEqual([-4, -4, -4, -4]);
    const strided = convHost(x, [1, 1, 3, 3], w, [1, 1, 2, 2], { ...P, stride: [2, 2], padding: [1, 1] });
    expect(Array.from(strided.value)).toEqual([-1, -3, -7, -4]);
    // two groups of one channel: each output channel sees only its own input channel
    const g = convHost([1, 2, 3, 4, 10, 20, 30, 40], [1, 2, 2, 2], [1, 1, 1, 1, 2, 0, 0, 0], [2, 1, 2, 2], { ...P, groups: 2 });
    expect(Array.from(g.value)).toEqual([10, 20]);
  });

  it('conv2d gradients are the adjoints of the forward map', () => {
    const p = { stride: [2, 1], padding: [1, 0], dilation: [1, 2], groups: 1 } as const;
    const x = Array.from({ length: 2 * 4 * 5 }, (_, i) => Math.sin(i));
    const w = Array.from({ length: 3 * 2 * 2 * 2 }, (_, i) => Math.cos(i));
    const y = convHost(x, [1, 2, 4, 5], w, [3, 2, 2, 2], p).value;
    const dy = Array.from(y, (_, i) => Math.sin(3 * i + 1));
    const dx = convInputGradHost(dy, w, [3, 2, 2, 2], [1, 2, 4, 5], p).value;
    const dw = convFilterGradHost(x, [1, 2, 4, 5], dy, [3, 2, 2, 2], p).value;
    const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, v, i) => s + v * b[i]!, 0);
    expect(dot(x, dx)).toBeCloseTo(dot(y, dy), 12);
    expect(dot(w, dw)).toBeCloseTo(dot(y, dy), 12);
  });

  it('reductions keep NaN, softmax sums to one, broadcasting maps indices', () => {
    expect(Array.from(reduceHost('max', [1, NaN, 3, 4], [2, 2], [1]).value)).toEqual([NaN, 4]);
    expect(Array.from(reduceHost('mean', [1, 2, 3, 4], [2, 2], [0]).value)).toEqual([2, 3]);
    const s = softmaxHost([1000, 1001, 1002], 3, false);
    expect(s.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 15);
    expect(Array.from(broadcastIndices([3], [2, 3]))).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(broadcastIndices([2, 1], [2, 3]))).toEqual([0, 0, 0, 1, 1, 1]);
  });

  it('erf and gelu', () => {
    expect(erfHost(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erfHost(-3.5)).toBeCloseTo(-0.9999992569016276, 15);
    expect(geluHost(-10) / (-10 * 7.619853024160527e-24)).toBeCloseTo(1, 12);
  });
});
