/**
 * docs/tfjs.md's example, run: a model whose weights are tf tensors gets PEFT's DoRA adapter from
 * fixtures/peft/linear and must give PEFT's output (out.dora), handed back as a tf.Tensor.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, expect, it } from 'vitest';
import { Layer, Linear, ops, tidy, type Backend, type Tensor } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { PeftModel } from '../src/index.js';
import { createTfjsBackend, fromTf, toTf, type TfjsBackend } from '@dorajs/backend-tfjs';
import { relativeError } from '@dorajs/backend-conformance';

const CASE = fileURLToPath(new URL('../../../fixtures/peft/linear/', import.meta.url));

// ---- from the docs
class Mlp extends Layer {
  lin1: Linear;
  lin2: Linear;
  constructor(backend: Backend) {
    super();
    this.lin1 = new Linear(16, 32, { backend });
    this.lin2 = new Linear(32, 8, { backend, bias: false });
  }
  forward(x: Tensor): Tensor {
    return this.lin2.forward(ops.relu(this.lin1.forward(x)));
  }
}
// ----

let backend: TfjsBackend;
afterAll(() => backend.dispose());

it('applies a PEFT DoRA adapter to a model whose weights are tf tensors', async () => {
  // Stand-ins for the application's own tf tensors.
  const host = async (file: string) => (await readSafetensors(join(CASE, file))).tensors;
  const toTfTensor = (t: { shape: readonly number[]; data: unknown }) => tf.tensor(t.data as Float32Array, [...t.shape]);
  const weights: Record<string, tf.Tensor> = Object.fromEntries(
    [...(await host('base/model.safetensors'))].map(([k, t]) => [k, toTfTensor(t)]),
  );
  const fixture = await host('tensors.safetensors');
  const x = toTfTensor(fixture.get('input.x')!);

  // ---- from the docs
  backend = await createTfjsBackend({ tfBackend: 'wasm' });
  const model = new Mlp(backend);
  const state = new Map<string, Tensor>(Object.entries(weights).map(([k, t]) => [k, fromTf(t, backend)]));
  model.loadStateDict(state); // the parameters now share the tf tensors' buffers
  state.forEach((t) => t.dispose());
  const peft = await PeftModel.fromPretrained(model, join(CASE, 'adapter'), { backend });
  const y = tidy(() => toTf(peft.forward(fromTf(x, backend))));
  // ----

  expect(y).toBeInstanceOf(tf.Tensor);
  const expected = fixture.get('out.dora')!.data as Float32Array;
  expect(relativeError(await y.data(), expected)).toBeLessThan(1e-5);
  // The adapter changed the output: matching out.dora is not matching the base model.
  expect(relativeError(expected, fixture.get('out.base')!.data as Float32Array)).toBeGreaterThan(1e-3);
  peft.dispose();
  tf.dispose([y, x, ...Object.values(weights)]);
  expect(backend.liveBuffers()).toBe(0);
});
