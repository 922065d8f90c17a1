/**
 * dorajs writes PEFT's files: every fixture adapter loaded and saved again comes out byte for byte as PEFT
 * wrote it (adapter_config.json and adapter_model.safetensors), and the Hugging Face cases (Llama, GPT-2
 * Conv1D with fan_in_fan_out, Llama with a targeted embedding and its base_layer.weight) load and merge to
 * PEFT's merged weights.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Module } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { fixturePath, loadBase, readHost } from './helpers/fixtures.js';
import { expectClose } from './helpers/parity.js';
import { ConvNet, EmbHead, MLP } from './helpers/models.js';
import { skeleton } from './helpers/skeleton.js';

const GPT2_CONV1D = ['c_attn', 'c_proj', 'c_fc'];

/** The fixture's base model: the real small models, or a skeleton of the Hugging Face ones. */
async function skeletonModel(name: string) {
  const backend = cpu();
  const small: Record<string, () => Module> = {
    linear: () => new MLP(backend),
    linear3d: () => new MLP(backend),
    lora_plain: () => new MLP(backend),
    mlp_adamw: () => new MLP(backend, [12, 20, 6]),
    embedding: () => new EmbHead(backend),
    conv2d: () => new ConvNet(backend),
  };
  const model =
    small[name]?.() ??
    skeleton(await readHost(fixturePath(name, 'base', 'model.safetensors')), backend, name === 'gpt2' ? GPT2_CONV1D : []);
  await loadBase(model, name, backend);
  return { model, backend };
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-files-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ADAPTERS: [string, string][] = [
  ['linear', 'adapter'],
  ['linear3d', 'adapter'],
  ['embedding', 'adapter'],
  ['conv2d', 'adapter'],
  ['lora_plain', 'adapter'],
  ['mlp_adamw', 'adapter'],
  ['mlp_adamw', 'adapter_trained'],
  ['llama', 'adapter'],
  ['gpt2', 'adapter'],
  ['llama_embed', 'adapter'],
];

describe('savePretrained writes exactly what PEFT wrote', () => {
  it.each(ADAPTERS)('%s/%s: load, save, byte-identical files', async (name, sub) => {
    const { model } = await skeletonModel(name);
    const peft = await PeftModel.fromPretrained(model, fixturePath(name, sub));
    const out = join(dir, `${name}-${sub}`);
    await peft.savePretrained(out);
    for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
      const ours = await readFile(join(out, file));
      const theirs = await readFile(fixturePath(name, sub, file));
      expect(ours.equals(theirs), `${file} differs`).toBe(true);
    }
  });
});

describe('Hugging Face fixture adapters merge to PEFT merged weights', () => {
  it.each(['llama', 'gpt2', 'llama_embed'])('%s: mergeAndUnload = merged.safetensors', async (name) => {
    const { model } = await skeletonModel(name);
    const peft = await PeftModel.fromPretrained(model, fixturePath(name, 'adapter'));
    const merged: Module = await peft.mergeAndUnload();
    const expected = await readHost(fixturePath(name, 'merged.safetensors'));
    const state = merged.stateDict();
    let compared = 0;
    for (const [k, v] of expected) {
      const p = state.get(k);
      if (!p) continue; // tied lm_head of GPT-2 is not in the skeleton
      await expectClose(p, v.data as Float32Array, `${name} merged ${k}`);
      compared++;
    }
    expect(compared).toBe(state.size);
  });
});
