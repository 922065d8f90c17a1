/**
 * The real use of these models: PEFT adapters from fixtures/peft/<case>/adapter applied through
 * @dorajs/peft, then merged and saved the way `dora merge` does. Checked against PEFT 0.21.0: adapter
 * logits, disabled logits, train-mode logits and every gradient, merged logits and merged weights.
 */
import { join } from 'node:path';
import { type Backend, backward, type HostTensor, noGrad, type Tensor, tensor, tidy } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { PeftModel } from '@dorajs/peft';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CausalLM, tokenIds } from '../src/index.js';
import { type CheckpointInfo, loadModel, saveModel } from '../src/node.js';
import { baseDir, cpu, fixtureDir, fixtureTensors, hostFloat32, tempDir } from './helpers.js';
import { relativeError } from '@dorajs/backend-conformance';

const TOL = 1e-5;

async function expectClose(actual: Tensor | Float32Array, expected: Float32Array, what: string): Promise<void> {
  const values = actual instanceof Float32Array ? actual : await actual.float32();
  expect(relativeError(values, expected), what).toBeLessThanOrEqual(TOL);
}

interface Case {
  readonly backend: Backend;
  readonly fx: ReadonlyMap<string, HostTensor>;
  readonly ids: Tensor;
  readonly checkpoint: CheckpointInfo;
  readonly peft: PeftModel<CausalLM>;
}

async function open(name: string, isTrainable: boolean): Promise<Case> {
  const backend = cpu();
  const fx = await fixtureTensors(name);
  const { model, checkpoint } = await loadModel(baseDir(name), { backend });
  const peft = await PeftModel.fromPretrained(model, join(fixtureDir(name), 'adapter'), { isTrainable });
  const ids = tokenIds(fx.get('input.ids')!, { vocabSize: model.vocabSize, backend });
  return { backend, fx, ids, checkpoint, peft };
}

const float = (c: Case, key: string): Float32Array => hostFloat32(c.fx.get(key), key);

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await tmp.cleanup();
});

describe.each(['llama', 'gpt2', 'llama_embed'])('%s with its PEFT DoRA adapter', (name) => {
  it('adapter and disabled-adapter logits match PEFT', async () => {
    const c = await open(name, false);
    const out = tidy(() => noGrad(() => c.peft.forward(c.ids)));
    await expectClose(out, float(c, 'out.dora'), 'out.dora');
    // The adapter must change the logits, or matching out.dora proves nothing.
    expect(relativeError(float(c, 'out.dora'), float(c, 'out.base'))).toBeGreaterThan(1e-3);
    const disabled = c.peft.disableAdapter(() => tidy(() => noGrad(() => c.peft.forward(c.ids))));
    await expectClose(disabled, float(c, 'out.disabled'), 'out.disabled');
    for (const t of [out, disabled, c.ids]) t.dispose();
    c.peft.dispose();
    expect(c.backend.liveBuffers()).toBe(0);
  });

  it('train-mode logits and every adapter gradient match PEFT', async () => {
    const c = await open(name, true);
    c.peft.train();
    tidy(() => {
      const out = c.peft.forward(c.ids);
      backward(out, { gradient: tensor(float(c, 'grad.R'), out.shape, { backend: c.backend }) });
    });
    const expected = [...c.fx.keys()].filter((k) => k.startsWith('grad.') && k !== 'grad.R');
    const trainable = c.peft.namedParameters().filter(([, p]) => p.requiresGrad);
    expect(trainable.map(([n]) => `grad.${n}`).sort()).toEqual(expected.sort());
    for (const [n, p] of trainable) await expectClose(p.grad!, float(c, `grad.${n}`), `grad.${n}`);
    // Base weights stay frozen: no gradient is computed for them.
    expect(c.peft.namedParameters().filter(([, p]) => !p.requiresGrad && p.grad !== null)).toEqual([]);
    c.ids.dispose();
    c.peft.dispose();
    expect(c.backend.liveBuffers()).toBe(0);
  });

  it('merged logits and weights match PEFT, and saveModel writes them under the base checkpoint names', async () => {
    const c = await open(name, false);
    const merged = await c.peft.mergeAndUnload();
    const out = tidy(() => noGrad(() => merged.forward(c.ids)));
    await expectClose(out, float(c, 'out.merged'), 'out.merged');
    const reference = (await readSafetensors(join(fixtureDir(name), 'merged.safetensors'))).tensors;
    const state = merged.stateDict();
    expect([...state.keys()].sort()).toEqual([...reference.keys()].sort());
    for (const [k, v] of reference) await expectClose(state.get(k)!, hostFloat32(v, k), `merged ${k}`);

    const dir = join(tmp.dir, 'merged');
    await saveModel(merged, dir, { like: c.checkpoint });
    const saved = (await readSafetensors(join(dir, 'model.safetensors'))).tensors;
    expect([...saved.keys()].sort()).toEqual(c.checkpoint.tensors.map((t) => t.key).sort());
    for (const [k, v] of saved) {
      expect(v.shape, k).toEqual(reference.get(k)!.shape);
      await expectClose(hostFloat32(v, k), hostFloat32(reference.get(k), k), `saved ${k}`);
    }
    // The saved folder loads back into the merged model.
    const reloaded = await loadModel(dir, { backend: c.backend });
    const again = tidy(() => noGrad(() => reloaded.model.forward(c.ids)));
    expect(Array.from(await again.float32())).toEqual(Array.from(await out.float32()));
    for (const t of [out, again, c.ids]) t.dispose();
    reloaded.model.dispose();
    merged.dispose();
    expect(c.backend.liveBuffers()).toBe(0);
  });
});
