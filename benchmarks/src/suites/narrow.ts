/**
 * Narrow weights on the CPU backend (docs/narrow-weights.md), same run, same backend: the one-token GEMV
 * y = x·Wᵀ through a 4096×4096 Linear with W in float32, bfloat16, int8 and nf4 (bytes of W read per call and
 * time; goals bf16 ≥ 1.6×, nf4 ≥ 2.5× faster than float32, since the GEMV is bound by reading W), and the
 * fused DoRA weight norm ‖W + s·B·A‖ with W in bf16 / nf4 against float32 — on one thread and on two.
 * `--size 1b` adds the peak RSS of a Llama-3.2-1B-shaped bf16 model loaded and run in a fresh process (rss1b).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { f32ToBf16, ops, QuantizedWeight, type Tensor, tensor, tidy, type Weight } from '@dorajs/core';
import { type BenchResult, type BenchSuite, gbpsOf, timeIt } from '../harness.js';
import { LLAMA_1B } from './llm.js';
import { randomMatrix } from './matmul-reference.js';
import { writeCheckpoint } from './model-load.js';

const run = promisify(execFile);

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

/**
 * `--size 1b`: a Llama-3.2-1B-shaped model (1.24B parameters, tied head) with random bfloat16 weights, written to a
 * temporary folder, loaded in a fresh child process on the CPU backend with `keepWidth` (2.5 GB in the wasm heap)
 * and run one forward pass; the row is the child's peak RSS against the bf16 weight bytes (goal ≤ 1.15×).
 * Takes ~2.5 GB in the child and ~4 GB in this process while writing: run it alone.
 */
async function rss1b(): Promise<BenchResult[]> {
  const folder = await mkdtemp(join(tmpdir(), 'dorajs-narrow-rss-'));
  try {
    await writeCheckpoint(folder, LLAMA_1B, 'BF16');
    const load0 = loadavg()[0]!;
    const child = fileURLToPath(new URL('./narrow-rss-child.js', import.meta.url));
    const { stdout } = await run(process.execPath, [child, folder], { maxBuffer: 1 << 20 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as {
      peakRss: number;
      baseRss: number;
      weightBytes: number;
      loadMs: number;
      forwardMs: number;
    };
    const ratio = r.peakRss / r.weightBytes;
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
    return [
      {
        name: 'llama-1b bf16 load + forward, peak RSS',
        backend: 'cpu',
        shape: `llama h${LLAMA_1B.hidden} i${LLAMA_1B.intermediate} L${LLAMA_1B.layers} v${LLAMA_1B.vocab} tied, prompt 8`,
        medianMs: r.loadMs + r.forwardMs,
        threads: 1,
        notes:
          `peak RSS ${gib(r.peakRss)} = ${ratio.toFixed(2)}× the ${gib(r.weightBytes)} of bf16 weights ` +
          `(goal ≤ 1.15×: ${ratio <= 1.15 ? 'met' : 'MISSED'}); Node alone ${gib(r.baseRss)}; load ${(r.loadMs / 1000).toFixed(1)} s, ` +
          `forward ${(r.forwardMs / 1000).toFixed(1)} s; one fresh process; load average ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`,
      },
    ];
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

const suite: BenchSuite = {
  name: 'narrow',
  async run({ quick, size }) {
    if (size !== undefined && size !== '1b') throw new Error(`narrow: unknown --size '${size}' (sizes: 1b)`);
    const big = size === '1b' ? await rss1b() : [];
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
            notes: f === 'float32' ? 'fused, one pass over W' : 'fused, one pass over W, widened in registers',
          });
        }
      } finally {
        for (const w of weights.values()) w.dispose();
        for (const t of [x, a, b] as Tensor[]) t.dispose();
        backend.dispose();
      }
    }
    return [...results, ...big];
  },
};

export default suite;
