/**
 * Every architecture on WebGPU (Dawn; llvmpipe with EGL_PLATFORM=surfaceless on machines without a GPU)
 * against fixtures/models within 1e-4, the project's GPU tolerance: forward logits, the teacher-forced
 * decode through the KV cache, and the DoRA adapter unmerged and merged. Without an adapter the file is
 * skipped locally (reason printed) but fails in CI, as the WebGPU backend's own tests do.
 */
import { createWebGpuBackend, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARCHITECTURE_CASES, expectDecodeMatches, expectDoraMatches, expectForwardMatches, openFixture } from './architecture-fixtures.js';

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

describe.each(ARCHITECTURE_CASES)('%s on WebGPU', (name) => {
  it('forward logits, decode logits, and the DoRA adapter unmerged and merged', async (context) => {
    if (!gpu) return context.skip(skipReason);
    const live = gpu.liveBuffers();
    const base = await openFixture(name, gpu, 1e-4);
    await expectForwardMatches(base, 'out.base');
    await expectDecodeMatches(base, 'base', false);
    base.ids.dispose();
    base.model.dispose();
    await expectDoraMatches(await openFixture(name, gpu, 1e-4), false);
    expect(gpu.liveBuffers()).toBe(live);
  });
});
