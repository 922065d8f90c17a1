/**
 * PEFT DoRA adapters through @dorajs/peft on a given backend: the fixtures' adapters (fixtures/peft/<case>/
 * adapter) on the tiny Llama, GPT-2 (Conv1D, fan_in_fan_out) and Llama-with-embedding-DoRA models. Adapter
 * logits, every adapter gradient, merged logits and merged weights against PEFT 0.21.0 within `tol`; nothing
 * is left alive afterwards. The CPU backend's own, longer version (saving included) is peft-parity.test.ts.
 */
import { join } from 'node:path';
import { relativeError } from '@dorajs/backend-conformance';
import { type Backend, backward, noGrad, type Tensor, tensor, tidy } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { PeftModel } from '@dorajs/peft';
import { describe, expect, it, type TestContext } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { FIXTURES, fixtureTensors, hostFloat32 } from './helpers.js';

export interface ParityTarget {
  /** The backend under test (may skip the test through the context). */
  readonly backend: (context: TestContext) => Backend;
  /** What the backend holds alive: buffers or tensors. */
  readonly live: (backend: Backend) => number;
  readonly tol: number;
}

async function expectClose(actual: Tensor, expected: Float32Array, what: string, tol: number): Promise<void> {
  expect(relativeError(await actual.float32(), expected), what).toBeLessThanOrEqual(tol);
}

async function open(backend: Backend, name: string, isTrainable: boolean) {
  const fx = await fixtureTensors(name);
  const { model } = await loadModel(join(FIXTURES, name, 'base'), { backend });
  const peft = await PeftModel.fromPretrained(model, join(FIXTURES, name, 'adapter'), { isTrainable, backend });
  const ids = tokenIds(fx.get('input.ids')!, { vocabSize: model.vocabSize, backend });
  return { fx, peft, ids };
}

export function describePeftFixtureParity(title: string, target: ParityTarget): void {
  const { tol } = target;
  describe.each(['llama', 'gpt2', 'llama_embed'])(`${title}: PEFT DoRA adapter %s`, (name) => {
    it('adapter logits and every adapter gradient match PEFT', async (context) => {
      const backend = target.backend(context);
      const live = target.live(backend);
      const { fx, peft, ids } = await open(backend, name, true);
      peft.eval();
      const out = tidy(() => noGrad(() => peft.forward(ids)));
      await expectClose(out, hostFloat32(fx.get('out.dora'), 'out.dora'), 'out.dora', tol);
      peft.train();
      tidy(() => {
        const y = peft.forward(ids);
        backward(y, { gradient: tensor(hostFloat32(fx.get('grad.R'), 'grad.R'), y.shape, { backend }) });
      });
      const trainable = peft.namedParameters().filter(([, p]) => p.requiresGrad);
      expect(trainable.length).toBeGreaterThan(0);
      for (const [n, p] of trainable) await expectClose(p.grad!, hostFloat32(fx.get(`grad.${n}`), `grad.${n}`), `grad.${n}`, tol);
      for (const t of [out, ids, peft]) t.dispose();
      expect(target.live(backend)).toBe(live);
    });

    it('merged logits and weights match PEFT', async (context) => {
      const backend = target.backend(context);
      const live = target.live(backend);
      const { fx, peft, ids } = await open(backend, name, false);
      const merged = await peft.mergeAndUnload();
      const out = tidy(() => noGrad(() => merged.forward(ids)));
      await expectClose(out, hostFloat32(fx.get('out.merged'), 'out.merged'), 'out.merged', tol);
      const reference = (await readSafetensors(join(FIXTURES, name, 'merged.safetensors'))).tensors;
      const state = merged.stateDict();
      for (const k of reference.keys()) await expectClose(state.get(k)!, hostFloat32(reference.get(k), k), `merged ${k}`, tol);
      for (const t of [out, ids, merged]) t.dispose();
      expect(target.live(backend)).toBe(live);
    });
  });
}
