import { describe, expect, it } from 'vitest';
import { gflopsOf, median, timeWithClock } from '../src/harness.js';
import { naiveMatmul, randomMatrix } from '../src/suites/matmul-reference.js';

/** A clock that advances by the next scripted duration each time a timed call starts and ends. */
function scriptedClock(durations: number[]): () => number {
  let t = 0;
  let starting = true;
  let i = 0;
  return () => {
    if (!starting) t += durations[i++ % durations.length]!;
    starting = !starting;
    return t;
  };
}

describe('timeIt', () => {
  it('runs warmup calls untimed, then at least iters timed calls, and takes the median', async () => {
    let calls = 0;
    const timing = await timeWithClock(() => calls++, { warmup: 3, iters: 5 }, scriptedClock([5, 1, 9, 2, 4]));
    expect(calls).toBe(8);
    expect(timing.samples).toEqual([5, 1, 9, 2, 4]);
    expect(timing.medianMs).toBe(4);
  });

  it('keeps sampling until minMs is reached', async () => {
    const timing = await timeWithClock(() => undefined, { warmup: 0, iters: 2, minMs: 10 }, scriptedClock([3]));
    expect(timing.samples).toEqual([3, 3, 3, 3]);
  });

  it('awaits asynchronous work inside the timed region', async () => {
    const order: string[] = [];
    let tick = 0;
    const clock = () => {
      order.push(`clock${tick++}`);
      return tick;
    };
    await timeWithClock(
      async () => {
        await Promise.resolve();
        order.push('done');
      },
      { warmup: 0, iters: 1 },
      clock,
    );
    expect(order).toEqual(['clock0', 'done', 'clock1']);
  });

  it('stops at 1000 samples even if minMs is never reached', async () => {
    const timing = await timeWithClock(() => undefined, { warmup: 0, iters: 1, minMs: Infinity }, scriptedClock([0]));
    expect(timing.samples).toHaveLength(1000);
  });
});

describe('helpers', () => {
  it('median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });

  it('gflops', () => {
    expect(gflopsOf(2 * 1024 ** 3, 1000)).toBeCloseTo(2.147, 3);
  });

  it('the naive matmul peer is correct', () => {
    // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]]
    const out = naiveMatmul(new Float32Array([1, 2, 3, 4, 5, 6]), new Float32Array([1, 0, 0, 1, 1, 1]), 2, 3, 2);
    expect([...out]).toEqual([4, 5, 10, 11]);
  });

  it('random matrices are seeded and in [-1, 1)', () => {
    const a = randomMatrix(4, 4, 7);
    expect(randomMatrix(4, 4, 7)).toEqual(a);
    expect(randomMatrix(4, 4, 8)).not.toEqual(a);
    expect(a.every((v) => v >= -1 && v < 1)).toBe(true);
  });
});
