/**
 * Narrow weights on the WebGPU backend (docs/narrow-weights.md), same run, same device: the one-token GEMV
 * y = x·Wᵀ through a 4096×4096 Linear with W in float32, bfloat16, float16, int8 and nf4 (W widened in
 * registers by the row-streaming program; bytes of W read per call and time), and the fused DoRA weight
 * norm ‖W + s·B·A‖ with W in bf16 / nf4 against float32. The sibling `narrow` suite measures the CPU.
 * On llvmpipe (CI, and machines without a GPU) the "GPU" is the CPU, so these rows say what a software
 * rasterizer does with fewer bytes, not what a GPU does.
 */
import { f32ToBf16, f32ToF16, ops, QuantizedWeight, tensor, tidy, type Weight } from '@dorajs/core';
import { type BenchResult, type BenchSuite, gbpsOf } from '../harness.js';
import { randomMatrix } from './matmul-reference.js';
import { createWebGpuBackendOrSkip, timeGpu } from './webgpu-measure.js';

type Format = 'float32' | 'bfloat16' | 'float16' | 'int8' | 'nf4';
const FORMATS: readonly Format[] = ['float32', 'bfloat16', 'float16', 'int8', 'nf4'];

function bytesOf(format: Format, d: number): number {
  switch (format) {
    case 'float32':
      return 4 * d * d;
    case 'bfloat16':
    case 'float16':
      return 2 * d * d;
    case 'int8':
      return d * d + 4 * d;
    case 'nf4':
      return (d * d) / 2 + 4 * ((d * d) / 64);
  }
}

const suite: BenchSuite = {
  name: 'narrow-webgpu',
  async run({ quick }) {
    const d = quick ? 1024 : 4096;
    const rank = 16;
    const be = await createWebGpuBackendOrSkip();
    const label = be.capabilities.software ? 'webgpu (llvmpipe)' : `webgpu (${be.description})`;
    const values = randomMatrix(d, d, 11).map((v) => v * 0.05);
    const weights = new Map<Format, Weight>([
      ['float32', tensor(values, [d, d], { backend: be })],
      ['bfloat16', tensor(Uint16Array.from(values, f32ToBf16), [d, d], { backend: be, dtype: 'bfloat16' })],
      ['float16', tensor(Uint16Array.from(values, f32ToF16), [d, d], { backend: be, dtype: 'float16' })],
      ['int8', QuantizedWeight.quantize(values, [d, d], be, { format: 'int8', name: 'bench.int8' })],
      ['nf4', QuantizedWeight.quantize(values, [d, d], be, { format: 'nf4', name: 'bench.nf4' })],
    ]);
    const x = tensor(randomMatrix(1, d, 12), [1, d], { backend: be });
    const a = tensor(randomMatrix(rank, d, 13), [rank, d], { backend: be });
    const b = tensor(randomMatrix(d, rank, 14), [d, rank], { backend: be });
    const trials = quick ? 3 : 5;
    const reps = quick ? 2 : 5;
    const results: BenchResult[] = [];
    try {
      const gemv = new Map<Format, number>();
      for (const f of FORMATS) {
        const w = weights.get(f)!;
        const medianMs = await timeGpu(be, reps, trials, () => tidy(() => ops.linear(x, w)));
        gemv.set(f, medianMs);
        const bytes = bytesOf(f, d);
        results.push({
          name: `gemv-${f}`,
          backend: label,
          shape: `1x${d} · ${d}x${d}ᵀ`,
          medianMs,
          gbps: gbpsOf(bytes, medianMs),
          threads: 1,
          ...(f === 'float32' ? {} : { ratio: gemv.get('float32')! / medianMs, ratioTo: 'gemv-float32' }),
          notes: `${(bytes / 2 ** 20).toFixed(1)} MiB of W read${f === 'nf4' ? ' (absmax block 64)' : f === 'int8' ? ' (+ SCB per row)' : ''}`,
        });
      }
      const norm = new Map<Format, number>();
      for (const f of ['float32', 'bfloat16', 'nf4'] as const) {
        const w = weights.get(f)!;
        const medianMs = await timeGpu(be, 1, trials, () => tidy(() => ops.weightNorm(w, a, b, 2)));
        norm.set(f, medianMs);
        results.push({
          name: `weight-norm-${f}`,
          backend: label,
          shape: `W ${d}x${d}, r ${rank}`,
          medianMs,
          threads: 1,
          ...(f === 'float32' ? {} : { ratio: norm.get('float32')! / medianMs, ratioTo: 'weight-norm-float32' }),
          notes: 'fused, one pass over W (rows program), W widened in registers',
        });
      }
    } finally {
      for (const w of weights.values()) w.dispose();
      for (const t of [x, a, b]) t.dispose();
      be.dispose();
    }
    return results;
  },
};

export default suite;
