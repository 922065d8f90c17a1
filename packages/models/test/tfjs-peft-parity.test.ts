/**
 * PEFT DoRA adapters on tfjs: the fixtures' adapters (fixtures/peft/<case>/adapter) applied through
 * @dorajs/peft to the tiny Llama, GPT-2 (Conv1D, fan_in_fan_out) and Llama-with-embedding-DoRA models on
 * tfjs-cpu and tfjs-wasm. Adapter logits, every adapter gradient and merged logits and weights against
 * PEFT 0.21.0, within the CPU bound of 1e-5; nothing is left alive afterwards.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backward, type HostTensor, noGrad, type Tensor, tensor, tidy } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { PeftModel } from '@dorajs/peft';
import { createTfjsBackend, type TfjsBackend } from '@dorajs/backend-tfjs';
import { relativeError } from '@dorajs/backend-conformance';

const FIXTURES = fileURLToPath(new URL('../../../fixtures/peft/', import.meta.url));
const TOL = 1e-5;

function float(fx: ReadonlyMap<string, HostTensor>, key: string): Float32Array {
  const t = fx.get(key);
  if (t?.dtype !== 'F32') throw new Error(`fixture tensor ${key} is missing or not F32`);
  return t.data;
}

async function expectClose(actual: Tensor, expected: Float32Array, what: string): Promise<void> {
  expect(relativeError(await actual.float32(), expected), what).toBeLessThanOrEqual(TOL);
}

describe.each(['cpu', 'wasm'] as const)('PEFT DoRA adapters on tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  async function open(name: string, isTrainable: boolean) {
    const fx = (await readSafetensors(join(FIXTURES, name, 'tensors.safetensors'))).tensors;
    const { model } = await loadModel(join(FIXTURES, name, 'base'), { backend: be });
    const peft = await PeftModel.fromPretrained(model, join(FIXTURES, name, 'adapter'), { isTrainable, backend: be });
    const ids = tokenIds(fx.get('input.ids')!, { vocabSize: model.vocabSize, backend: be });
    return { fx, peft, ids };
  }

  describe.each(['llama', 'gpt2', 'llama_embed'])('%s', (name) => {
    it('adapter logits and every adapter gradient match PEFT', async () => {
      const tfBefore = tf.memory().numTensors;
      const { fx, peft, ids } = await open(name, true);
      peft.eval();
      const out = tidy(() => noGrad(() => peft.forward(ids)));
      await expectClose(out, float(fx, 'out.dora'), 'out.dora');
      peft.train();
      tidy(() => {
        const y = peft.forward(ids);
        backward(y, { gradient: tensor(float(fx, 'grad.R'), y.shape, { backend: be }) });
      });
      const trainable = peft.namedParameters().filter(([, p]) => p.requiresGrad);
      expect(trainable.length).toBeGreaterThan(0);
      for (const [n, p] of trainable) await expectClose(p.grad!, float(fx, `grad.${n}`), `grad.${n}`);
      for (const t of [out, ids, peft]) t.dispose();
      expect(tf.memory().numTensors).toBe(tfBefore);
    });

    it('merged logits and weights match PEFT', async () => {
      const { fx, peft, ids } = await open(name, false);
      const merged = await peft.mergeAndUnload();
      const out = tidy(() => noGrad(() => merged.forward(ids)));
      await expectClose(out, float(fx, 'out.merged'), 'out.merged');
      const reference = (await readSafetensors(join(FIXTURES, name, 'merged.safetensors'))).tensors;
      const state = merged.stateDict();
      for (const k of reference.keys()) await expectClose(state.get(k)!, float(reference, k), `merged ${k}`);
      for (const t of [out, ids, merged]) t.dispose();
    });
  });
});
