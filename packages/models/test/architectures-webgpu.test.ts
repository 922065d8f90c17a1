/**
 * Every architecture on WebGPU (Dawn; llvmpipe with EGL_PLATFORM=surfaceless on machines without a GPU)
 * against fixtures/models within 1e-4, the project's GPU tolerance: forward logits, the teacher-forced
 * decode through the KV cache, and the DoRA adapter unmerged and merged. Without an adapter the file is
 * skipped locally (reason printed) but fails in CI, as the WebGPU backend's own tests do.
 */
import { expect, describe, it } from 'vitest';
import {
  ARCHITECTURE_CASES,
  expectDecodeMatches,
  expectDoraMatches,
  expectForwardMatches,
  expectGenerateMatches,
  GENERATE_CASES,
  openFixture,
} from './architecture-fixtures.js';
import { useWebGpu } from './webgpu.js';

const webGpu = useWebGpu();

describe.each(ARCHITECTURE_CASES)('%s on WebGPU', (name) => {
  it('forward logits, decode logits, and the DoRA adapter unmerged and merged', async (context) => {
    const gpu = webGpu(context);
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

describe.each(GENERATE_CASES)('%s: generate() on WebGPU', (name) => {
  it('the left-padded batch past the LongRoPE switch gives the reference tokens (KV cache written by the writeSlice kernel)', async (context) => {
    const gpu = webGpu(context);
    const live = gpu.liveBuffers();
    await expectGenerateMatches(await openFixture(name, gpu, 1e-4));
    expect(gpu.liveBuffers()).toBe(live);
  });
});
