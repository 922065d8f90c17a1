/** PEFT DoRA model fixtures on tfjs-cpu and tfjs-wasm within the CPU bound of 1e-5 (see peft-fixture-parity.ts). */
import { createTfjsBackend, type TfjsBackend } from '@dorajs/backend-tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe } from 'vitest';
import { describePeftFixtureParity } from './peft-fixture-parity.js';

describe.each(['cpu', 'wasm'] as const)('tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());
  describePeftFixtureParity(`tfjs-${tfBackend}`, { backend: () => be, live: () => tf.memory().numTensors, tol: 1e-5 });
});
