/**
 * Core's inference shortcuts on this backend: rmsNorm and rotaryEmbedding run one fused kernel where no
 * gradient is recorded (the composite otherwise, with the same values), and a transpose that only moves
 * axes of size 1 is a view (no kernel, same values, gradients still flow).
 */
import { type Backend, backward, noGrad, ops, Parameter, tensor } from '@dorajs/core';
import { relativeError } from '@dorajs/backend-conformance';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';
import { seeded } from './helpers.js';

/** The backend with a count of each kernel called. */
function counted(kernels: 'js' | 'wasm'): { backend: Backend; calls: Map<string, number> } {
  const inner = createCpuBackend({ kernels });
  const calls = new Map<string, number>();
  const backend = new Proxy(inner, {
    get(t, p, r) {
      const v = Reflect.get(t, p, r);
      if (typeof v !== 'function' || typeof p !== 'string') return v;
      return (...args: unknown[]) => {
        calls.set(p, (calls.get(p) ?? 0) + 1);
        return v.apply(t, args);
      };
    },
  }) as unknown as Backend;
  return { backend, calls };
}

const random = (n: number, seed: number): Float32Array => seeded(n, seed);

describe.each(['js', 'wasm'] as const)('inference ops (%s kernels)', (kernels) => {
  it('rmsNorm: one kernel without grad, the composite with grad, the same values', async () => {
    const { backend, calls } = counted(kernels);
    const x = tensor(random(3 * 40, 1), [3, 40], { backend });
    const weight = new Parameter(tensor(random(40, 2), [40], { backend }));
    calls.clear();
    const fused = noGrad(() => ops.rmsNorm(x, weight, 1e-5));
    expect([...calls.keys()]).toEqual(['rmsNorm']);
    calls.clear();
    const composite = ops.rmsNorm(x, weight, 1e-5);
    expect(calls.has('rmsNorm')).toBe(false);
    expect(composite.requiresGrad).toBe(true);
    expect(relativeError(await fused.float32(), await composite.float32())).toBeLessThanOrEqual(1e-6);
    // The composite's gradient still reaches the weight.
    backward(ops.sum(composite));
    expect(weight.grad?.shape).toEqual([40]);
  });

  it('rotaryEmbedding: one kernel without grad, bit-equal to the composite', async () => {
    const { backend, calls } = counted(kernels);
    const x = new Parameter(tensor(random(2 * 3 * 5 * 8, 3), [2, 3, 5, 8], { backend }));
    const cos = tensor(random(2 * 5 * 8, 4), [2, 1, 5, 8], { backend });
    const sin = tensor(random(2 * 5 * 8, 5), [2, 1, 5, 8], { backend });
    calls.clear();
    const fused = noGrad(() => ops.rotaryEmbedding(x, cos, sin));
    expect([...calls.keys()]).toEqual(['rotary']);
    calls.clear();
    const composite = ops.rotaryEmbedding(x, cos, sin);
    expect(calls.has('rotary')).toBe(false);
    expect(Array.from(await fused.float32())).toEqual(Array.from(await composite.float32()));
    backward(ops.sum(composite));
    expect(x.grad?.shape).toEqual([2, 3, 5, 8]);
    expect(() => ops.rotaryEmbedding(x, ops.reshape(cos, [2, 5, 1, 8]), sin)).toThrow(/rotaryEmbedding/);
  });

  it('a transpose that moves only axes of size 1 is a view; others still run the kernel', async () => {
    const { backend, calls } = counted(kernels);
    const values = random(32 * 4, 6);
    const x = new Parameter(tensor(values, [1, 1, 32, 4], { backend }));
    calls.clear();
    const heads = ops.transpose(x, [0, 2, 1, 3]);
    expect(calls.has('transpose')).toBe(false);
    expect(heads.shape).toEqual([1, 32, 1, 4]);
    expect(Array.from(await heads.float32())).toEqual(Array.from(values));
    backward(ops.sum(ops.mul(heads, heads)));
    expect(Array.from(await x.grad!.float32())).toEqual(Array.from(values, (v) => Math.fround(2 * v)));
    calls.clear();
    const swapped = ops.transpose(ops.reshape(x, [32, 4]), [1, 0]);
    expect(calls.get('transpose')).toBe(1);
    expect((await swapped.float32())[1]).toBe(values[4]);
  });
});
