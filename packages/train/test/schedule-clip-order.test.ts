import { Parameter, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { clipGradNorm, DataOrder, globalGradNorm, linearWarmupDecay } from '../src/index.js';
import { testBackend } from './helpers.js';

describe('linearWarmupDecay', () => {
  it('follows transformers get_linear_schedule_with_warmup', () => {
    const f = linearWarmupDecay(2, 10);
    expect([0, 1, 2, 3, 6, 10, 12].map(f)).toEqual([0, 0.5, 1, 7 / 8, 4 / 8, 0, 0]);
    expect(linearWarmupDecay(0, 4)(0)).toBe(1);
  });
});

describe('clipGradNorm', () => {
  it('scales gradients to the max norm and reports the norm before clipping', async () => {
    const backend = await testBackend();
    const a = new Parameter(tensor([0, 0], [2], { backend }));
    const b = new Parameter(tensor([0], [1], { backend }));
    a.grad = tensor([3, 0], [2], { backend });
    b.grad = tensor([4], [1], { backend });
    expect(await globalGradNorm([a, b])).toBeCloseTo(5, 6);
    const before = backend.liveBuffers();
    expect(await clipGradNorm([a, b], 1)).toBeCloseTo(5, 6);
    expect(backend.liveBuffers()).toBe(before);
    expect(Array.from(await a.grad!.float32())[0]).toBeCloseTo(0.6, 5);
    expect(Array.from(await b.grad!.float32())[0]).toBeCloseTo(0.8, 5);
    // Below the limit: untouched.
    expect(await clipGradNorm([a, b], 10)).toBeCloseTo(1, 5);
    expect(Array.from(await b.grad!.float32())[0]).toBeCloseTo(0.8, 5);
  });
});

describe('DataOrder', () => {
  it('visits every example once per epoch in a seed-determined order and resumes from (epoch, offset)', () => {
    const a = new DataOrder(10, 7);
    const epoch0 = [...a.next(4), ...a.next(4), ...a.next(4)];
    expect(epoch0).toHaveLength(10); // the last batch of the epoch is short
    expect([...epoch0].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const firstOfEpoch1 = a.next(3);
    const state = a.getState();
    const rest = a.next(5);
    const b = new DataOrder(10, 7);
    b.setState(state);
    expect(b.next(5)).toEqual(rest);
    expect(new DataOrder(10, 7).next(10)).toEqual(epoch0);
    expect(new DataOrder(10, 8).next(10)).not.toEqual(epoch0);
    expect(firstOfEpoch1).not.toEqual(epoch0.slice(0, 3));
  });
});
