/**
 * Whole models on tfjs: base-model logits of the tiny Llama and GPT-2 fixtures (transformers' `out.base`),
 * through @dorajs/models, on tfjs-cpu and tfjs-wasm — attention, RoPE, RMSNorm/LayerNorm, gelu_new and
 * embeddings exercised together, with nothing left alive afterwards — and every Llama-like family of
 * fixtures/models (forward, teacher-forced decode, DoRA unmerged and merged) within 1e-4, and Phi-3's
 * free-running batched generate() with its cache rebuild.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGrad, tidy } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { createTfjsBackend, type TfjsBackend } from '@dorajs/backend-tfjs';
import { relativeError } from '@dorajs/backend-conformance';
import {
  ARCHITECTURE_CASES,
  expectDecodeMatches,
  expectDoraMatches,
  expectForwardMatches,
  expectGenerateMatches,
  GENERATE_CASES,
  openFixture,
} from './architecture-fixtures.js';

const FIXTURES = fileURLToPath(new URL('../../../fixtures/peft/', import.meta.url));

describe.each(['cpu', 'wasm'] as const)('model logits on tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  it.each(['llama', 'llama_embed', 'gpt2'])('%s matches transformers within 1e-5', async (name) => {
    const { tensors } = await readSafetensors(join(FIXTURES, name, 'tensors.safetensors'));
    const expected = tensors.get('out.base');
    if (expected?.dtype !== 'F32') throw new Error(`${name}: out.base missing or not F32`);
    const tfBefore = tf.memory().numTensors;
    const { model } = await loadModel(join(FIXTURES, name, 'base'), { backend: be });
    const ids = tokenIds(tensors.get('input.ids')!, { vocabSize: model.vocabSize, backend: be });
    const logits = tidy(() => noGrad(() => model.forward(ids)));
    expect(relativeError(await logits.float32(), expected.data)).toBeLessThan(1e-5);
    for (const t of [logits, ids, model]) t.dispose();
    expect(tf.memory().numTensors).toBe(tfBefore);
  });
});

describe.each(['cpu', 'wasm'] as const)('Llama-like architectures on tfjs-%s (fixtures/models, within 1e-4)', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  it.each(ARCHITECTURE_CASES.map(([name]) => name))('%s: forward, decode, and the DoRA adapter unmerged and merged', async (name) => {
    const tfBefore = tf.memory().numTensors;
    const base = await openFixture(name, be, 1e-4);
    await expectForwardMatches(base, 'out.base');
    await expectDecodeMatches(base, 'base', false);
    base.ids.dispose();
    base.model.dispose();
    await expectDoraMatches(await openFixture(name, be, 1e-4), false);
    expect(tf.memory().numTensors).toBe(tfBefore);
  });

  it.each([...GENERATE_CASES])(
    "%s: generate() on a left-padded batch past the LongRoPE switch (cache written by core's composite)",
    async (name) => {
      const tfBefore = tf.memory().numTensors;
      await expectGenerateMatches(await openFixture(name, be, 1e-4));
      expect(tf.memory().numTensors).toBe(tfBefore);
    },
  );
});
