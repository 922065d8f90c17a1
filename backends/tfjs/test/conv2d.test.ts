import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Conv2dParams } from '@dorajs/core';
import { createTfjsBackend, type TfjsBackend } from '../src/index.js';
import { conv2dRef, filterGradRef, inputGradRef, outShape, type ConvCase } from './conv-reference.js';
import { info, read, seeded, TF_BACKENDS, wrap } from './helpers.js';
import { relativeError } from '@dorajs/backend-conformance';

const params = (p: Partial<Conv2dParams>): Conv2dParams => ({
  stride: [1, 1],
  padding: [0, 0],
  dilation: [1, 1],
  groups: 1,
  ...p,
});

const CASES: Record<string, ConvCase> = {
  'plain 3x3 pad 1': { x: [2, 3, 6, 6], w: [4, 3, 3, 3], p: params({ padding: [1, 1] }) },
  '1x1': { x: [2, 6, 5, 5], w: [4, 6, 1, 1], p: params({}) },
  'stride 2, odd size (rows the stride never reaches)': {
    x: [1, 2, 8, 7],
    w: [3, 2, 3, 3],
    p: params({ stride: [2, 2], padding: [1, 0] }),
  },
  'dilation 2': { x: [1, 2, 9, 9], w: [2, 2, 3, 3], p: params({ dilation: [2, 2], padding: [2, 2] }) },
  'stride 2 with dilation 2': { x: [1, 2, 11, 10], w: [3, 2, 3, 3], p: params({ stride: [2, 2], dilation: [2, 2], padding: [1, 1] }) },
  'mixed stride/dilation per axis': { x: [1, 2, 9, 9], w: [2, 2, 3, 2], p: params({ stride: [2, 1], dilation: [1, 3], padding: [1, 2] }) },
  'padding larger than the dilated kernel': { x: [1, 1, 4, 4], w: [2, 1, 2, 2], p: params({ padding: [3, 2] }) },
  'groups 2': { x: [2, 4, 5, 5], w: [6, 2, 3, 3], p: params({ groups: 2, padding: [1, 1] }) },
  'groups 2 strided and dilated': { x: [1, 4, 9, 9], w: [4, 2, 2, 2], p: params({ groups: 2, stride: [2, 2], dilation: [2, 2] }) },
  depthwise: { x: [2, 3, 6, 6], w: [3, 1, 3, 3], p: params({ groups: 3, padding: [1, 1] }) },
  'depthwise multiplier 2, strided': { x: [1, 3, 7, 7], w: [6, 1, 3, 3], p: params({ groups: 3, stride: [2, 2], padding: [1, 1] }) },
  'depthwise strided and dilated': {
    x: [1, 2, 9, 9],
    w: [2, 1, 3, 3],
    p: params({ groups: 2, stride: [2, 2], dilation: [2, 2], padding: [2, 2] }),
  },
};

const TOL = 1e-5;

describe.each(TF_BACKENDS)('conv2d on tfjs-%s', (tfBackend) => {
  let backend: TfjsBackend;
  beforeAll(async () => {
    backend = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => backend.dispose());

  describe.each(Object.entries(CASES))('%s', (_name, c) => {
    const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    const x = seeded(size(c.x), 3);
    const w = seeded(size(c.w), 5);
    const yShape = outShape(c);
    const dy = seeded(size(yShape), 7);

    it('forward matches the direct loop', async () => {
      const y = backend.conv2d(info(backend, x, c.x), info(backend, w, c.w), c.p, yShape);
      expect(relativeError(await read(backend, wrap(y, yShape)), conv2dRef(c, x, w))).toBeLessThan(TOL);
    });

    it('input gradient matches the direct loop', async () => {
      const dx = backend.conv2dBackpropInput(info(backend, dy, yShape), info(backend, w, c.w), c.p, c.x);
      expect(relativeError(await read(backend, wrap(dx, c.x)), inputGradRef(c, dy, w))).toBeLessThan(TOL);
    });

    it('filter gradient matches the direct loop', async () => {
      const dw = backend.conv2dBackpropFilter(info(backend, x, c.x), info(backend, dy, yShape), c.p, c.w);
      expect(relativeError(await read(backend, wrap(dw, c.w)), filterGradRef(c, x, dy))).toBeLessThan(TOL);
    });
  });

  it('names the op and shapes when groups do not divide the channels', () => {
    const x = info(backend, seeded(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    const w = info(backend, seeded(4 * 1 * 1 * 1), [4, 1, 1, 1]);
    expect(() => backend.conv2d(x, w, params({ groups: 2 }), [2, 4, 4, 4])).toThrow(/conv2d: groups=2 must divide the 3 input/);
  });
});
