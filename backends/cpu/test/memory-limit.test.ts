/** memoryLimitBytes: allocations past the cap are refused (OutOfMemoryError) before any memory is taken. */
import { ConfigError, ops, OutOfMemoryError, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';

describe.each(['js', 'wasm'] as const)('memoryLimitBytes with the %s kernels', (kernels) => {
  it('refuses an upload or a kernel result past the cap, takes nothing, and admits again after a release', () => {
    const backend = createCpuBackend({ kernels, memoryLimitBytes: 1000 });
    expect(backend.memory()).toEqual({ usedBytes: 0, limitBytes: 1000 });
    const a = tensor(new Float32Array(200), [200], { backend });
    expect(backend.memory().usedBytes).toBe(800);
    const live = backend.liveBuffers();
    let error: unknown;
    try {
      tensor(new Float32Array(100), [100], { backend });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect((error as OutOfMemoryError).message).toMatch(
      /^cpu: an uploaded float32 tensor \[100\] \(400 bytes\) does not fit memoryLimitBytes: 800 of 1000 bytes are held by live tensors$/,
    );
    expect(() => ops.add(a, a)).toThrow(/a float32 result of 200 elements \(800 bytes\) does not fit memoryLimitBytes/);
    expect(backend.liveBuffers()).toBe(live);
    expect(backend.memory().usedBytes).toBe(800);
    const b = tensor(new Float32Array(50), [50], { backend });
    b.dispose();
    a.dispose();
    expect(backend.memory().usedBytes).toBe(0);
    const d = tensor(new Float32Array(100), [100], { backend });
    const c = ops.mulScalar(d, 2);
    expect(backend.memory().usedBytes).toBe(800);
    c.dispose();
    d.dispose();
    expect(backend.liveBuffers()).toBe(0);
    backend.dispose();
  });
});

it('memoryLimitBytes must be a non-negative integer', () => {
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    expect(() => createCpuBackend({ memoryLimitBytes: bad })).toThrow(ConfigError);
  }
  expect(createCpuBackend({ memoryLimitBytes: 0 }).memoryLimitBytes).toBe(0);
});
