/**
 * The models are differentiable: backward of sum(logits ⊙ R) gives every parameter a gradient that
 * matches central finite differences of the float64 reference forward.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { backward, Random, tensor, tidy } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig, writeCheckpoint } from './checkpoints.js';
import { cpu, tempDir } from './helpers.js';
import { referenceGPT2, referenceLlama, type Weights } from './reference.js';
import { relativeError } from '@dorajs/backend-conformance';

const IDS = [
  [5, 1, 11, 7],
  [2, 2, 19, 0],
];
const SAMPLES_PER_PARAMETER = 6;

let root: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  root = await tempDir();
});
afterAll(async () => {
  await root.cleanup();
});

describe.each([
  ['llama', llamaConfig({ num_hidden_layers: 1, attention_bias: true }), referenceLlama],
  ['gpt2', gpt2Config({ n_layer: 1 }), referenceGPT2],
] as const)('%s gradients', (name, config, reference) => {
  it('match finite differences of the reference for every parameter', async () => {
    const dir = join(root.dir, name);
    await mkdir(dir);
    const weights = await writeCheckpoint(dir, config, { seed: 7 });
    const backend = cpu();
    const { model } = await loadModel(dir, { backend });
    const vocab = model.vocabSize;
    const r = new Random(3).fillNormal(IDS.length * IDS[0]!.length * vocab);
    const ids = tokenIds(IDS, { vocabSize: vocab, backend });
    tidy(() => {
      const logits = model.forward(ids);
      backward(logits, { gradient: tensor(r, logits.shape, { backend }) });
    });

    const objective = (w: Weights): number => {
      let total = 0;
      let i = 0;
      for (const seq of IDS) for (const row of reference(config, w, seq)) for (const v of row) total += v * r[i++]!;
      return total;
    };
    const pick = new Random(11);
    const params = model.namedParameters();
    expect(params.length).toBe(weights.size);
    for (const [key, p] of params) {
      expect(p.grad, key).not.toBeNull();
      const grad = await p.grad!.float32();
      const base = weights.get(key)!;
      const got: number[] = [];
      const want: number[] = [];
      for (let s = 0; s < SAMPLES_PER_PARAMETER; s++) {
        const i = Math.floor(pick.next() * base.length);
        const h = 1e-4;
        const bumped = (delta: number): Weights => {
          const copy = Float64Array.from(base);
          copy[i]! += delta;
          return new Map<string, Float32Array | Float64Array>([...weights, [key, copy]]);
        };
        want.push((objective(bumped(h)) - objective(bumped(-h))) / (2 * h));
        got.push(grad[i]!);
      }
      expect(relativeError(got, want), key).toBeLessThan(1e-4);
    }
    ids.dispose();
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });
});
