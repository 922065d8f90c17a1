/** Every config flag against the float64 reference in reference.ts, through a real checkpoint folder. */
import { noGrad, tidy } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig, writeCheckpoint } from './checkpoints.js';
import { cpu, tempDir } from './helpers.js';
import { referenceGPT2, referenceLlama } from './reference.js';
import { relativeError } from '@dorajs/backend-conformance';

const IDS = [
  [3, 17, 0, 9, 9, 12],
  [19, 1, 4, 4, 15, 2],
];

let root: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  root = await tempDir();
});
afterAll(async () => {
  await root.cleanup();
});

type Json = Readonly<Record<string, unknown>>;
type Reference = typeof referenceLlama;

async function expectMatchesReference(name: string, config: Json, reference: Reference): Promise<void> {
  const dir = `${root.dir}/${name}`;
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  const weights = await writeCheckpoint(dir, config, { seed: name.length });
  const backend = cpu();
  const { model } = await loadModel(dir, { backend });
  const ids = tokenIds(IDS, { vocabSize: model.vocabSize, backend });
  const logits = tidy(() => noGrad(() => model.forward(ids)));
  const got = await logits.float32();
  const want = Float64Array.from(IDS.flatMap((seq) => reference(config, weights, seq).flatMap((row) => [...row])));
  expect(relativeError(got, want)).toBeLessThan(1e-5);
  model.dispose();
  logits.dispose();
  ids.dispose();
  expect(backend.liveBuffers()).toBe(0);
}

describe('LlamaForCausalLM follows config.json', () => {
  it.each<[string, Json]>([
    ['grouped-query attention (4 heads, 2 kv heads)', {}],
    ['multi-head attention', { num_key_value_heads: 4 }],
    ['multi-query attention', { num_key_value_heads: 1 }],
    ['no num_key_value_heads means one per head', { num_key_value_heads: undefined }],
    ['head_dim from config, not hidden/heads', { head_dim: 8 }],
    ['attention_bias and mlp_bias', { attention_bias: true, mlp_bias: true }],
    ['tied word embeddings', { tie_word_embeddings: true }],
    ['legacy top-level rope_theta', { rope_parameters: undefined, rope_theta: 500 }],
    ['rope_parameters.rope_theta', { rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }],
    ['legacy rope_scaling: null', { rope_parameters: undefined, rope_scaling: null, rope_theta: 50 }],
    ['hidden_act gelu', { hidden_act: 'gelu' }],
  ])('%s', async (label, overrides) => {
    await expectMatchesReference(`llama-${label.replace(/\W+/g, '-')}`, llamaConfig(overrides), referenceLlama);
  });
});

describe('GPT2LMHeadModel follows config.json', () => {
  it.each<[string, Json]>([
    ['defaults (gelu_new, n_inner null, tied head)', {}],
    ['explicit n_inner', { n_inner: 7 }],
    ['untied lm_head', { tie_word_embeddings: false }],
    ['activation gelu (erf)', { activation_function: 'gelu' }],
    ['activation relu', { activation_function: 'relu' }],
    ['activation silu', { activation_function: 'silu' }],
    ['activation gelu_pytorch_tanh', { activation_function: 'gelu_pytorch_tanh' }],
    ['scale_attn_weights false', { scale_attn_weights: false }],
    ['scale_attn_by_inverse_layer_idx', { scale_attn_by_inverse_layer_idx: true, n_layer: 3 }],
    ['layer_norm_epsilon', { layer_norm_epsilon: 0.5 }],
  ])('%s', async (label, overrides) => {
    await expectMatchesReference(`gpt2-${label.replace(/\W+/g, '-')}`, gpt2Config(overrides), referenceGPT2);
  });
});
