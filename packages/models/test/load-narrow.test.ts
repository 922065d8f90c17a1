/**
 * loadModel({ keepWidth: true }): a BF16/F16 checkpoint's Linear, Conv1D and Embedding weights stay 2 bytes
 * per weight on the backend and the logits still match the float64 reference; reserveBytes and the heap
 * limit are checked before any tensor is read.
 */
import { relativeError } from '@dorajs/backend-conformance';
import { type Backend, noGrad, OutOfMemoryError, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig, writeCheckpoint } from './checkpoints.js';
import { cpu, rejection, useTempFolders } from './helpers.js';
import { referenceGPT2, referenceLlama } from './reference.js';

const IDS = [[4, 9, 1, 16, 0]];
const folder = useTempFolders();

describe('loadModel keepWidth', () => {
  for (const [arch, make, reference] of [
    ['llama', llamaConfig, referenceLlama],
    ['gpt2', gpt2Config, referenceGPT2],
  ] as const) {
    it.each(['BF16', 'F16'] as const)(`${arch}: keeps %s weights 2 bytes wide and matches the float64 reference`, async (dtype) => {
      const dir = await folder();
      const config = make();
      const weights = await writeCheckpoint(dir, config, { seed: 21, dtype });
      const backend: Backend = cpu();
      const { model } = await loadModel(dir, { backend, keepWidth: true });
      const narrowDtype = dtype === 'BF16' ? 'bfloat16' : 'float16';
      const params = [...model.stateDict()];
      const narrow = params.filter(([, p]) => p.dtype === narrowDtype).map(([k]) => k);
      // Every 2-D projection and the embedding; norms and biases stay float32.
      expect(narrow.length).toBeGreaterThan(4);
      expect(narrow.every((k) => k.endsWith('.weight'))).toBe(true);
      expect(params.filter(([k]) => /norm|ln_|bias/.test(k)).every(([, p]) => p.dtype === 'float32')).toBe(true);
      const ids = tokenIds(IDS, { vocabSize: model.vocabSize, backend });
      const out = tidy(() => noGrad(() => model.forward(ids)));
      const got = await out.float32();
      out.dispose();
      ids.dispose();
      model.dispose();
      const want = reference(config, weights, IDS[0]!).flatMap((r) => [...r]);
      expect(relativeError(got, want)).toBeLessThan(1e-5);
      expect(backend.liveBuffers()).toBe(0);
    });
  }

  it('refuses up front when the weights plus reserveBytes exceed the wasm heap, uploading nothing', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { seed: 3, dtype: 'BF16' });
    const backend = cpu();
    const live = backend.liveBuffers();
    const err = await rejection(loadModel(dir, { backend, keepWidth: true, reserveBytes: 2 ** 33 }));
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/cannot hold the reserved 8589934592 bytes \(reserveBytes\)/);
    expect(backend.liveBuffers()).toBe(live);
  });
});
