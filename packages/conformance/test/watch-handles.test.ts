import type { Backend } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { handleBytes, watchHandles } from '../src/watch-handles.js';

/** The smallest backend-shaped object: two handle makers, a release, a download. */
function fake() {
  const released: object[] = [];
  const inner = {
    zeros: (n: number) => ({ values: new Float32Array(n) }),
    gpuLike: (n: number) => ({ size: n, dtype: 'bfloat16' }),
    same: null as unknown as object,
    again() {
      return this.same;
    },
    count: () => 7,
    release: (h: object) => void released.push(h),
    download: (h: { values: Float32Array }) => h.values,
  };
  inner.same = inner.zeros(2);
  return { inner, released };
}

describe('watchHandles', () => {
  it('reports each new handle once with its bytes, every release, and every call', () => {
    const { inner, released } = fake();
    const events: string[] = [];
    const b = watchHandles(inner as unknown as Backend, {
      call: (op, args) => events.push(`call ${op}(${args.join(',')})`),
      created: (_h, bytes, op) => events.push(`new ${op} ${bytes}`),
      released: () => events.push('release'),
    }) as unknown as typeof inner;
    const h = b.zeros(3);
    b.gpuLike(5);
    b.again();
    b.again();
    expect(b.count()).toBe(7);
    b.download(h);
    b.release(h);
    expect(released).toEqual([h]);
    expect(events).toEqual([
      'call zeros(3)',
      'new zeros 12',
      'call gpuLike(5)',
      'new gpuLike 10',
      'call again()',
      'new again 8',
      'call again()',
      'call count()',
      'release',
    ]);
  });

  it('sizes cpu-style and webgpu-style handles, 0 for anything else', () => {
    expect(handleBytes({ values: new Uint8Array(9) })).toBe(9);
    expect(handleBytes({ size: 4, dtype: 'float32' })).toBe(16);
    expect(handleBytes({ size: 4, dtype: 'nope' })).toBe(0);
    expect(handleBytes(null)).toBe(0);
  });
});
