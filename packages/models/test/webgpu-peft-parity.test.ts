/**
 * PEFT DoRA adapters on WebGPU (Dawn; llvmpipe with EGL_PLATFORM=surfaceless on machines without a GPU): the
 * fixtures' adapters (fixtures/peft/<case>/adapter) on the tiny Llama, GPT-2 (Conv1D, fan_in_fan_out) and
 * Llama-with-embedding-DoRA models. Adapter logits, every adapter gradient, merged logits and merged weights
 * against PEFT 0.21.0 within the project's GPU bound of 1e-4; every buffer released afterwards. Without an
 * adapter the file is skipped locally (reason printed) but fails in CI, as the WebGPU backend's own tests do.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { relativeError } from '@dorajs/backend-conformance';
import { createWebGpuBackend, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { backward, type HostTensor, noGrad, type Tensor, tensor, tidy } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { PeftModel } from '@dorajs/peft';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';

const FIXTURES = fileURLToPath(new URL('../../../fixtures/peft/', import.meta.url));
const TOL = 1e-4;

function float(fx: ReadonlyMap<string, HostTensor>, key: string): Float32Array {
  const t = fx.get(key);
  if (t?.dtype !== 'F32') throw new Error(`fixture tensor ${key} is missing or not F32`);
  return t.data;
}

async function expectClose(actual: Tensor, expected: Float32Array, what: string): Promise<void> {
  expect(relativeError(await actual.float32(), expected), what).toBeLessThanOrEqual(TOL);
}

let gpu: WebGpuBackend | null = null;
let skipReason = '';
beforeAll(async () => {
  try {
    gpu = await createWebGpuBackend();
  } catch (error) {
    if (process.env.CI === 'true') throw new Error(`CI requires a WebGPU adapter (EGL_PLATFORM=surfaceless): ${(error as Error).message}`);
    skipReason = `no WebGPU adapter, skipping: ${(error as Error).message}`;
    console.warn(skipReason);
  }
});
afterAll(() => gpu?.dispose());

async function open(be: WebGpuBackend, name: string, isTrainable: boolean) {
  const fx = (await readSafetensors(join(FIXTURES, name, 'tensors.safetensors'))).tensors;
  const { model } = await loadModel(join(FIXTURES, name, 'base'), { backend: be });
  const peft = await PeftModel.fromPretrained(model, join(FIXTURES, name, 'adapter'), { isTrainable, backend: be });
  const ids = tokenIds(fx.get('input.ids')!, { vocabSize: model.vocabSize, backend: be });
  return { fx, peft, ids };
}

describe.each(['llama', 'gpt2', 'llama_embed'])('PEFT DoRA adapter %s on WebGPU', (name) => {
  it('adapter logits and every adapter gradient match PEFT', async (context) => {
    if (!gpu) return context.skip(skipReason);
    const live = gpu.liveBuffers();
    const { fx, peft, ids } = await open(gpu, name, true);
    peft.eval();
    const out = tidy(() => noGrad(() => peft.forward(ids)));
    await expectClose(out, float(fx, 'out.dora'), 'out.dora');
    peft.train();
    tidy(() => {
      const y = peft.forward(ids);
      backward(y, { gradient: tensor(float(fx, 'grad.R'), y.shape, { backend: gpu! }) });
    });
    const trainable = peft.namedParameters().filter(([, p]) => p.requiresGrad);
    expect(trainable.length).toBeGreaterThan(0);
    for (const [n, p] of trainable) await expectClose(p.grad!, float(fx, `grad.${n}`), `grad.${n}`);
    for (const t of [out, ids, peft]) t.dispose();
    expect(gpu.liveBuffers()).toBe(live);
  });

  it('merged logits and weights match PEFT', async (context) => {
    if (!gpu) return context.skip(skipReason);
    const live = gpu.liveBuffers();
    const { fx, peft, ids } = await open(gpu, name, false);
    const merged = await peft.mergeAndUnload();
    const out = tidy(() => noGrad(() => merged.forward(ids)));
    await expectClose(out, float(fx, 'out.merged'), 'out.merged');
    const reference = (await readSafetensors(join(FIXTURES, name, 'merged.safetensors'))).tensors;
    const state = merged.stateDict();
    for (const k of reference.keys()) await expectClose(state.get(k)!, float(reference, k), `merged ${k}`);
    for (const t of [out, ids, merged]) t.dispose();
    expect(gpu.liveBuffers()).toBe(live);
  });
});
