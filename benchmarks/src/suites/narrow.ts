/**
 * Narrow weights on the CPU backend (docs/narrow-weights.md), same run, same backend: the one-token GEMV
 * y = x·Wᵀ through a 4096×4096 Linear with W in float32, bfloat16, int8 and nf4 (bytes of W read per call and
 * time; goals bf16 ≥ 1.6×, nf4 ≥ 2.5× faster than float32, since the GEMV is bound by reading W), and the
 * fused DoRA weight norm ‖W + s·B·A‖ with W in bf16 / nf4 against float32 — on one thread and on two.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { f32ToBf16, ops, QuantizedWeight, type Tensor, tensor, tidy, type Weight } from '@dorajs/core';
import { type BenchResult, type BenchSuite, gbpsOf, timeIt } from '../harness.js';
import { randomMatrix } from './matmul-reference.js';

type Format = 'float32' | 'bfloat16' | 'int8' | 'nf4';
const FORMATS: readonly Format[] = ['float32', 'bfloat16', 'int8', 'nf4'];

function bytesOf(format: Format, d: number): number {
  switch (format) {
    case 'float32':
      return 4 * d * d;
    case 'bfloat16':
      return 2 * d * d;
    case 'int8':
      return d * d + 4 * d;
    case 'nf4':
      return (d * d) / 2 + 4 * ((d * d) / 64);
  }
}

const suite: BenchSuite = {
  name: 'narrow',
  async run({ quick }) {
    const d = quick ? 1024 : 4096;
    const rank = 16;
    const results: BenchResult[] = [];
    const values = randomMatrix(d, d, 11).map((v) => v * 0.05);
    for (const threads of [1, 2]) {
      const backend = createCpuBackend({ threads });
      await backend.ready();
      const weights = new Map<Format, Weight>();
      weights.set('float32', tensor(values, [d, d], { backend }));
      weights.set('bfloat16', tensor(Uint16Array.from(values, f32ToBf16), [d, d], { backend, dtype: 'bfloat16' }));
      weights.set('int8', QuantizedWeight.quantize(values, [d, d], backend, { format: 'int8', name: 'bench.int8' }));
      weights.set('nf4', QuantizedWeight.quantize(values, [d, d], backend, { format: 'nf4', name: 'bench.nf4' }));
      const x = tensor(randomMatrix(1, d, 12), [1, d], { backend });
      const a = tensor(randomMatrix(rank, d, 13), [rank, d], { backend });
      const b = tensor(randomMatrix(d, rank, 14), [d, rank], { backend });
      const timing = { warmup: 2, iters: quick ? 3 : 9, minMs: quick ? 0 : 400 };
      try {
        const gemv = new Map<Format, number>();
        for (const f of FORMATS) {
          const w = weights.get(f)!;
          const { medianMs } = await timeIt(() => tidy(() => ops.linear(x, w)).dispose(), timing);
          gemv.set(f, medianMs);
          const bytes = bytesOf(f, d);
          results.push({
            name: `gemv-${f}`,
            backend: 'cpu',
            shape: `1x${d} · ${d}x${d}ᵀ`,
            medianMs,
            gbps: gbpsOf(bytes, medianMs),
            threads: backend.threads,
            ...(f === 'float32' ? {} : { ratio: gemv.get('float32')! / medianMs, ratioTo: 'gemv-float32' }),
            notes: `${(bytes / 2 ** 20).toFixed(1)} MiB of W read${f === 'nf4' ? ' (absmax block 64)' : f === 'int8' ? ' (+ SCB per row)' : ''}`,
          });
        }
        const norm = new Map<Format, number>();
        for (const f of ['float32', 'bfloat16', 'nf4'] as const) {
          const w = weights.get(f)!;
          const { medianMs } = await timeIt(() => tidy(() => ops.weightNorm(w, a, b, 2)).dispose(), timing);
          norm.set(f, medianMs);
          results.push({
            name: `weight-norm-${f}`,
            backend: 'cpu',
            shape: `W ${d}x${d}, r ${rank}`,
            medianMs,
            threads: backend.threads,
            ...(f === 'float32' ? {} : { ratio: norm.get('float32')! / medianMs, ratioTo: 'weight-norm-float32' }),
            notes: f === 'float32' ? 'fused, one pass over W' : 'W widened one 1 MiB panel of rows at a time',
          });
        }
      } finally {
        for (const w of weights.values()) w.dispose();
        for (const t of [x, a, b] as Tensor[]) t.dispose();
        backend.dispose();
      }
    }
    return results;
  },
};

export default suite;
