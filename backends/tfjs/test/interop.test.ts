import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, DTypeError, Linear, ops, ReLU, Sequential, tensor, tidy, type Backend, type Tensor } from '@dorajs/core';
import { createTfjsBackend, fromTf, toTf, type TfjsBackend } from '../src/index.js';
import { TF_BACKENDS } from './helpers.js';

describe.each(TF_BACKENDS)('tf.Tensor interop on tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  it('fromTf shares the data buffer and leaves the caller’s tensor to the caller', async () => {
    const source = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const t = fromTf(source, be);
    expect(t.shape).toEqual([2, 2]);
    expect(t.dtype).toBe('float32');
    // Same tfjs data id: no copy was made.
    expect((t.info.data as tf.Tensor).dataId).toBe(source.dataId);
    const y = ops.matmul(t, t);
    expect(Array.from(await y.data())).toEqual([7, 10, 15, 22]);
    t.dispose();
    y.dispose();
    expect(source.isDisposed).toBe(false);
    expect(Array.from(await source.data())).toEqual([1, 2, 3, 4]);
    source.dispose();
  });

  it('toTf returns a caller-owned tensor with the dorajs shape, valid after the dorajs tensor is gone', async () => {
    const t = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], { backend: be });
    const flat = ops.reshape(t, [6]); // a core view: same handle, different shape
    const out = toTf(flat);
    expect(out.shape).toEqual([6]);
    expect((out as tf.Tensor).dataId).toBe((t.info.data as tf.Tensor).dataId);
    flat.dispose();
    t.dispose();
    expect(Array.from(await out.data())).toEqual([1, 2, 3, 4, 5, 6]);
    out.dispose();
  });

  it('int32 passes through, bool becomes float32 1/0, string is refused', async () => {
    const ids = fromTf(tf.tensor1d([3, 1], 'int32'), be);
    expect(ids.dtype).toBe('int32');
    const mask = fromTf(tf.tensor1d([true, false, true], 'bool'), be);
    expect(mask.dtype).toBe('float32');
    expect(Array.from(await mask.data())).toEqual([1, 0, 1]);
    const c = tf.tensor1d(['a'], 'string');
    expect(() => fromTf(c, be)).toThrow(DTypeError);
    expect(() => fromTf(c, be)).toThrow(/adopt: dtype 'string'/);
    for (const t of [ids, mask, c]) t.dispose();
  });

  it('loads a model from tf tensors and hands its output back to tf (the docs example, without the adapter)', async () => {
    const tfWeights: Record<string, tf.Tensor> = {
      '0.weight': tf.tensor2d([1, 0, 0, 1, 1, 1], [3, 2]),
      '0.bias': tf.tensor1d([0, 0, -5]),
      '2.weight': tf.tensor2d([1, 2, 3], [1, 3]),
    };
    const model = new Sequential(new Linear(2, 3, { backend: be }), new ReLU(), new Linear(3, 1, { backend: be, bias: false }));
    const state = new Map<string, Tensor>(Object.entries(tfWeights).map(([k, t]) => [k, fromTf(t, be)]));
    model.loadStateDict(state);
    state.forEach((t) => t.dispose());
    const x = fromTf(tf.tensor2d([2, 3], [1, 2]), be);
    const liveBefore = be.liveBuffers();
    const y = tidy(() => toTf(model.forward(x))); // tidy frees the dorajs intermediates; y is a tf.Tensor
    expect(be.liveBuffers()).toBe(liveBefore);
    // h = relu([2, 3, 5 − 5]) = [2, 3, 0]; y = 2 + 6 + 0
    expect(Array.from(await y.data())).toEqual([8]);
    expect(Object.values(tfWeights).every((t) => !t.isDisposed)).toBe(true);
    y.dispose();
    x.dispose();
    Object.values(tfWeights).forEach((t) => t.dispose());
  });

  it('dorajs tensors made inside a tf.tidy of the caller survive it', async () => {
    let kept: Tensor | undefined;
    // Returns nothing: tf.tidy would otherwise find (and spare) the tf.Tensor inside the returned dorajs tensor.
    tf.tidy(() => {
      kept = ops.mulScalar(fromTf(tf.tensor1d([1, 2, 3]), be), 2);
    });
    expect(Array.from(await kept!.data())).toEqual([2, 4, 6]);
    kept!.dispose();
  });

  it('toTf names the backend when the tensor is not on tfjs', () => {
    const foreign = { name: 'cpu' } as Backend;
    const fake = { backend: foreign, toString: () => 'Tensor([1], float32, cpu)' } as unknown as Parameters<typeof toTf>[0];
    expect(() => toTf(fake)).toThrow(BackendError);
    expect(() => toTf(fake)).toThrow(/lives on backend 'cpu'/);
  });
});

describe('two tfjs backends in one process', () => {
  it('each instance computes on its own tfjs backend and tensors move between them', async () => {
    const onCpu = await createTfjsBackend({ tfBackend: 'cpu' });
    const onWasm = await createTfjsBackend({ tfBackend: 'wasm' });
    const a = tensor(new Float32Array([1, 2]), [2], { backend: onCpu });
    const b = tensor(new Float32Array([3, 4]), [2], { backend: onWasm });
    const sumCpu = ops.add(a, a);
    expect(tf.getBackend()).toBe('cpu');
    const sumWasm = ops.add(b, b);
    expect(tf.getBackend()).toBe('wasm');
    expect(Array.from(await sumCpu.data())).toEqual([2, 4]);
    expect(Array.from(await sumWasm.data())).toEqual([6, 8]);
    expect(onWasm.runtime).toMatchObject({ name: 'wasm', simd: true, threads: 1, offHost: false });
    onCpu.dispose();
    onWasm.dispose();
  });

  it('an unknown tfjs backend is a BackendError listing the registered ones', async () => {
    await expect(createTfjsBackend({ tfBackend: 'webgl' })).rejects.toThrow(
      /tfjs backend 'webgl' is not registered \(registered: cpu, wasm/,
    );
  });
});
