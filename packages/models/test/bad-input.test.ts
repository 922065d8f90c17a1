/**
 * Issue 14, item 5 — bad input to generation, each refused with a typed one-line error before any work, and
 * out of memory (forced through the CPU backend's memoryLimitBytes) failing cleanly with every buffer back.
 * The tokenizer / chat-template / prompt-length cases live with their subjects: tokenizer.test.ts
 * (vocabulary, failing template), generate.test.ts (prompt past max_position_embeddings) and the CLI's
 * generate.test.ts (all three through `dora generate`, before any weight is read).
 */
import { join } from 'node:path';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, OutOfMemoryError, Random } from '@dorajs/core';
import { PeftModel } from '@dorajs/peft';
import { describe, expect, it } from 'vitest';
import {
  AdapterMismatchError,
  type CausalLM,
  checkAdapterFits,
  checkPromptFits,
  createModel,
  GenerationError,
  generate,
  maxPositionsOf,
  modelSkeleton,
  UnsupportedModelError,
} from '../src/index.js';
import { checkAdapter, describeAdapter, loadModel } from '../src/node.js';
import { ARCHITECTURE_FIXTURES } from './architecture-fixtures.js';
import { gpt2Config, llamaConfig } from './checkpoints.js';
import { cpu, FIXTURES, rejection } from './helpers.js';

const modelDir = (name: string): string => join(ARCHITECTURE_FIXTURES, name, 'base');
const adapterDir = (name: string): string => join(ARCHITECTURE_FIXTURES, name, 'adapter');

/** The error of `promise`, which must be an AdapterMismatchError of one line. */
async function mismatch(promise: Promise<unknown>): Promise<string> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(AdapterMismatchError);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  return message;
}

describe('an adapter for another architecture', () => {
  it('a Phi-3 adapter (qkv_proj, gate_up_proj) on a Llama: refused naming the module, nothing attached', async () => {
    const backend = cpu();
    const { model } = await loadModel(modelDir('llama3_tied'), { backend });
    const live = backend.liveBuffers();
    const message = await mismatch(checkAdapter(model, adapterDir('phi3')));
    expect(message).toMatch(
      /adapter_model\.safetensors: tensor 'base_model\.model\.model\.layers\.0\.self_attn\.qkv_proj\.lora_A\.weight' adapts module 'model\.layers\.0\.self_attn\.qkv_proj', which this LlamaForCausalLM does not have; the adapter was made for a Phi3ForCausalLM$/,
    );
    // PEFT alone would attach the two modules whose names match (o_proj, down_proj) and only warn.
    expect(model.namedModules().filter(([, m]) => 'lora_A' in m)).toHaveLength(0);
    expect(backend.liveBuffers()).toBe(live);
    model.dispose();
  });

  it('a Qwen2 adapter on a Phi-3, and an adapter for a narrower Llama: refused naming module and sizes', async () => {
    const backend = cpu();
    const { model: phi3 } = await loadModel(modelDir('phi3'), { backend });
    expect(await mismatch(checkAdapter(phi3, adapterDir('qwen2')))).toMatch(
      /tensor '.*layers\.0\.self_attn\.q_proj\.lora_A\.weight' adapts module 'model\.layers\.0\.self_attn\.q_proj', which this Phi3ForCausalLM does not have; the adapter was made for a Qwen2ForCausalLM/,
    );
    phi3.dispose();
    // fixtures/peft/llama is 32 wide; the architecture fixtures' adapters were made for 16.
    const { model: wide } = await loadModel(join(FIXTURES, 'llama', 'base'), { backend });
    expect(await mismatch(checkAdapter(wide, adapterDir('qwen2')))).toMatch(
      /tensor '.*layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2, 16\] but module 'model\.layers\.0\.self_attn\.q_proj' of this LlamaForCausalLM has in_features 32; the adapter was made for a Qwen2ForCausalLM/,
    );
    wide.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('an adapter made for the model passes, and the browser-safe check takes a description', async () => {
    const backend = cpu();
    for (const name of ['phi3', 'qwen2', 'gemma2']) {
      const { model } = await loadModel(modelDir(name), { backend });
      await checkAdapter(model, adapterDir(name));
      const peft = await PeftModel.fromPretrained(model, adapterDir(name));
      peft.dispose();
    }
    const { model } = await loadModel(modelDir('llama3_tied'), { backend });
    const description = await describeAdapter(adapterDir('llama3_tied'));
    expect(() => checkAdapterFits(model, description)).not.toThrow();
    const renamed = new Map([...description.shapes].map(([k, s]) => [k.replace('mlp.down_proj', 'mlp.w2'), s]));
    expect(() => checkAdapterFits(model, { ...description, shapes: renamed })).toThrow(/adapts module 'model\.layers\.0\.mlp\.w2'/);
    const stranger = new Map([['base_model.model.model.layers.0.mlp.c_fc.weight', [4, 4]]]);
    expect(() => checkAdapterFits(model, { ...description, shapes: stranger })).toThrow(
      /names parameter 'model\.layers\.0\.mlp\.c_fc\.weight', which this LlamaForCausalLM does not have/,
    );
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });
});

describe('an adapter checked before any weight is read', () => {
  it('modelSkeleton(config.json) has the module tree and shapes, and no storage: the check runs on it', async () => {
    const { readFile } = await import('node:fs/promises');
    const json = JSON.parse(await readFile(join(modelDir('phi3'), 'config.json'), 'utf8'));
    const skeleton = modelSkeleton(json);
    expect(skeleton.typeName).toBe('Phi3ForCausalLM');
    await checkAdapter(skeleton, adapterDir('phi3'));
    expect(await mismatch(checkAdapter(skeleton, adapterDir('llama3_tied')))).toMatch(
      /adapts module 'model\.layers\.0\.self_attn\.q_proj', which this Phi3ForCausalLM does not have; the adapter was made for a LlamaForCausalLM$/,
    );
    await expect(skeleton.parameters()[0]!.float32()).rejects.toThrow(/used before its weight was loaded/);
    skeleton.dispose();
  });
});

describe('out of memory through the CPU backend memoryLimitBytes', () => {
  const config = llamaConfig({ vocab_size: 24, max_position_embeddings: 4096 });
  const prompts = [
    [3, 17, 0, 9],
    [19, 1, 4, 4, 15, 2, 11],
  ];
  const build = (backend: Backend): CausalLM => createModel(config, { backend, random: new Random(3) }).eval() as CausalLM;
  // Sizes measured on an uncapped backend: the weights, and the KV cache of 2 rows × (7 + 2000) positions
  // (which dwarfs the ~70 kB a short generation's activations take at their peak).
  const probe = build(cpu());
  const weightBytes = probe.parameters().reduce((s, p) => s + p.size * 4, 0);
  const cache = probe.createCache(2, 2007);
  const cacheBytes = cache.bytes;
  cache.dispose();
  probe.dispose();

  // One layer's key (or value) buffer [2, 2 kv heads, 2007, 4].
  const cacheBuffer = /a float32 result of 32112 elements/;
  it.each([
    ['the KV cache does not fit', weightBytes + cacheBytes / 2, true],
    ['the cache fits, the prefill activations do not', weightBytes + cacheBytes + 64, false],
  ])('%s: a typed OutOfMemoryError, every buffer back, and the backend still usable', async (_label, limit, inCache) => {
    for (const kernels of ['js', 'wasm'] as const) {
      const backend = createCpuBackend({ kernels, memoryLimitBytes: limit });
      const model = build(backend);
      const live = backend.liveBuffers();
      const used = backend.memory().usedBytes;
      const error = await rejection(generate(model, prompts, { maxNewTokens: 2000 }));
      expect(error, kernels).toBeInstanceOf(OutOfMemoryError);
      expect((error as Error).message).toMatch(/^cpu: .* does not fit memoryLimitBytes: \d+ of \d+ bytes are held by live tensors$/);
      expect(cacheBuffer.test((error as Error).message), (error as Error).message).toBe(inCache);
      expect(backend.liveBuffers(), kernels).toBe(live);
      expect(backend.memory().usedBytes, kernels).toBe(used);
      // What was taken came back: a generation that fits runs on the same backend.
      const ok = await generate(model, prompts, { maxNewTokens: 2 });
      expect(ok.newTokens.map((t) => t.length)).toEqual([2, 2]);
      expect(backend.liveBuffers(), kernels).toBe(live);
      model.dispose();
      backend.dispose();
    }
  });
});

describe('a prompt longer than the model, known from config.json before any weight is read', () => {
  it('maxPositionsOf agrees with the built model for every family; checkPromptFits refuses one token more', () => {
    const configs: [Record<string, unknown>, number][] = [
      [llamaConfig({ max_position_embeddings: 48 }), 48],
      [llamaConfig({ max_position_embeddings: 8, rope_parameters: { rope_type: 'dynamic', factor: 2, rope_theta: 10000 } }), Infinity],
      [gpt2Config({ n_positions: 12 }), 12],
      [{ ...llamaConfig({ max_position_embeddings: 40 }), model_type: 'qwen2' }, 40],
    ];
    for (const [config, want] of configs) {
      expect(maxPositionsOf(config)).toBe(want);
      const model = createModel(config, { backend: cpu() });
      expect(model.maxPositions).toBe(want);
      model.dispose();
    }
    expect(() => checkPromptFits(48, 48)).not.toThrow();
    expect(() => checkPromptFits(49, 48)).toThrow(GenerationError);
    expect(() => checkPromptFits(49, 48)).toThrow(
      /^generate: a prompt of 49 tokens is longer than the model's 48 positions \(max_position_embeddings\)$/,
    );
    expect(() => maxPositionsOf({ model_type: 'bert' }, 'x/config.json')).toThrow(UnsupportedModelError);
  });
});
