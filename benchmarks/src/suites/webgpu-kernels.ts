/**
 * WebGPU kernels on whatever adapter this machine has (Mesa llvmpipe in CI, so sizes stay small): matmul
 * per program variant, GEMV, the fused weight norm, host cost per dispatch and a DoRA vs LoRA Linear
 * forward. The H200 figures come from `benchmarks/h200/run.sh` (see docs/webgpu.md).
 */
import type { BenchResult, BenchSuite } from '../harness.js';
import {
  createWebGpuBackendOrSkip,
  measureDispatch,
  measureDoraLinear,
  measureGemv,
  measureMatmul,
  measureWeightNorm,
  type MeasureContext,
} from './webgpu-measure.js';

const suite: BenchSuite = {
  name: 'webgpu-kernels',
  async run({ quick }) {
    const be = await createWebGpuBackendOrSkip();
    const adapter = be.description.includes('opengles') ? 'llvmpipe' : be.description;
    const c: MeasureContext = { be, label: `webgpu (${adapter})`, trials: quick ? 3 : 5, trialMs: quick ? 50 : 200 };
    const rows: BenchResult[] = [];
    try {
      rows.push(...(await measureMatmul(c, quick ? 128 : 256, ['tiled', 'smallK'])));
      rows.push(...(await measureGemv(c, quick ? 256 : 1024, quick ? 256 : 1024)));
      rows.push(...(await measureWeightNorm(c, quick ? 256 : 1024, quick ? 256 : 1024, 16, 'float32')));
      rows.push(...(await measureWeightNorm(c, quick ? 256 : 1024, quick ? 256 : 1024, 16, 'bfloat16')));
      rows.push(...(await measureDispatch(c, quick ? 200 : 1000)));
      rows.push(...(await measureDoraLinear(c, quick ? 128 : 256, quick ? 128 : 256, 16, quick ? [1, 16] : [1, 64])));
    } finally {
      be.dispose();
    }
    return rows;
  },
};

export default suite;
