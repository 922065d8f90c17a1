/** Base-model logits against transformers (fixtures/peft/<case>/tensors.safetensors → out.base). */
import { noGrad, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { baseDir, cpu, fixtureTensors, hostFloat32 } from './helpers.js';
import { relativeError } from '@dorajs/backend-conformance';

describe.each([
  ['llama', 'LlamaForCausalLM', [2, 9, 96]],
  ['llama_embed', 'LlamaForCausalLM', [2, 7, 64]],
  ['gpt2', 'GPT2LMHeadModel', [2, 6, 64]],
] as const)('%s base logits', (name, typeName, logitsShape) => {
  it(`match transformers within 1e-5 and leak nothing`, async () => {
    const backend = cpu();
    const tensors = await fixtureTensors(name);
    const { model } = await loadModel(baseDir(name), { backend });
    expect(model.typeName).toBe(typeName);
    expect(model.training).toBe(false);
    const ids = tokenIds(tensors.get('input.ids')!, { vocabSize: model.vocabSize, backend });
    const live = backend.liveBuffers();
    const logits = tidy(() => noGrad(() => model.forward(ids)));
    expect(logits.shape).toEqual(logitsShape);
    expect(backend.liveBuffers()).toBe(live + 1);
    // With grad on, the logits keep the activations backward needs; disposing them frees everything.
    tidy(() => model.forward(ids)).dispose();
    expect(backend.liveBuffers()).toBe(live + 1);
    expect(relativeError(await logits.float32(), hostFloat32(tensors.get('out.base'), 'out.base'))).toBeLessThan(1e-5);
    logits.dispose();
    ids.dispose();
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });
});
