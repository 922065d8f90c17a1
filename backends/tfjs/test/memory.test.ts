/**
 * No tf.Tensor outlives its dorajs handle: a DoRA forward/backward loop (linear, conv2d and embedding paths,
 * through core's autograd) leaves tf.memory().numTensors and the backend's live count where they started.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backward,
  composeAdapter,
  doraWeightNorm,
  loraBranch,
  magnitudeScale,
  ops,
  Parameter,
  tensor,
  tidy,
  type LayerGeometry,
  type Tensor,
} from '@dorajs/core';
import { createTfjsBackend, type TfjsBackend } from '../src/index.js';
import { seeded, TF_BACKENDS } from './helpers.js';

describe.each(TF_BACKENDS)('memory on tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  const param = (shape: number[], seed: number) =>
    new Parameter(
      tensor(
        seeded(
          shape.reduce((a, b) => a * b, 1),
          seed,
        ),
        shape,
        { backend: be },
      ),
    );
  const clearGrads = (ps: Parameter[]) => ps.forEach((p) => (p.grad?.dispose(), (p.grad = null)));

  it('a DoRA forward/backward loop over linear, conv2d and embedding leaks no tf tensor', () => {
    const linear: LayerGeometry = { kind: 'linear' };
    const conv: LayerGeometry = { kind: 'conv2d' };
    const embed: LayerGeometry = { kind: 'embedding' };
    const lw = param([6, 8], 1),
      la = param([2, 8], 2),
      lb = param([6, 2], 3),
      lm = param([6], 4);
    const cw = param([4, 3, 3, 3], 5),
      ca = param([2, 3, 3, 3], 6),
      cb = param([4, 2, 1, 1], 7),
      cm = param([1, 4, 1, 1], 8);
    const ew = param([10, 6], 9),
      ea = param([2, 10], 10),
      eb = param([6, 2], 11),
      em = param([6], 12);
    const trainable = [la, lb, lm, ca, cb, cm, ea, eb, em];
    const x = tensor(seeded(3 * 8, 13), [3, 8], { backend: be });
    const img = tensor(seeded(2 * 3 * 5 * 5, 14), [2, 3, 5, 5], { backend: be });
    const ids = tensor(new Int32Array([1, 4, 4, 9]), [4], { backend: be });

    const step = (): void => {
      tidy(() => {
        const dora = (geo: LayerGeometry, base: Tensor, input: Tensor, w: Tensor, a: Tensor, b: Tensor, m: Tensor) =>
          composeAdapter(
            geo,
            base,
            loraBranch(geo, input, a, b, geo.kind === 'conv2d' ? { padding: 1 } : undefined),
            0.5,
            magnitudeScale(m, doraWeightNorm(geo, w, a, b, 0.5)),
            null,
          );
        const y1 = dora(linear, ops.linear(x, lw, null), x, lw, la, lb, lm);
        const y2 = dora(conv, ops.conv2d(img, cw, null, { padding: 1 }), img, cw, ca, cb, cm);
        const y3 = dora(embed, ops.gather(ew, ids), ids, ew, ea, eb, em);
        const loss = ops.add(ops.add(ops.sum(ops.gelu(y1)), ops.sum(ops.relu(y2))), ops.sum(ops.logSoftmax(y3)));
        backward(loss);
      });
      clearGrads(trainable);
    };

    step(); // tfjs allocates nothing lazily that a later step would not, but warm up anyway
    const tensorsBefore = tf.memory().numTensors;
    const liveBefore = be.liveBuffers();
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(be.liveBuffers()).toBe(liveBefore);

    // The loop did real work: gradients reach every trainable tensor.
    tidy(() => {
      const y = composeAdapter(
        linear,
        ops.linear(x, lw, null),
        loraBranch(linear, x, la, lb),
        0.5,
        magnitudeScale(lm, doraWeightNorm(linear, lw, la, lb, 0.5)),
        null,
      );
      backward(ops.sum(y));
    });
    expect(la.grad && lb.grad && lm.grad).toBeTruthy();
    clearGrads(trainable);

    for (const t of [...trainable, lw, cw, ew, x, img, ids]) t.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore - (liveBefore - be.liveBuffers()));
  });

  it('dispose() frees every handle the backend still holds', async () => {
    const other = await createTfjsBackend({ tfBackend });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) other.fill([3], i, 'float32');
    expect(tf.memory().numTensors).toBe(before + 4);
    other.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => other.fill([1], 0, 'float32')).toThrow(/used after dispose/);
  });
});
