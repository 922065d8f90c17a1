/**
 * @dorajs/backend-cpu kernels beyond square matmul, at the shapes DoRA/LoRA training hits: the two thin
 * LoRA products (K = in, N = r and K = r), the M = 1 decode GEMV, a 3×3 conv2d with both gradients, the
 * fused weight norm in both layouts, and the elementwise/softmax kernels, all single-threaded.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend, Conv2dParams, TensorInfo } from '@dorajs/core';
import { gbpsOf, gflopsOf, timeIt, type BenchResult, type BenchSuite } from '../harness.js';
import { randomMatrix } from './matmul-reference.js';

interface Row {
  readonly name: string;
  readonly shape: string;
  readonly flops?: number;
  readonly bytes?: number;
  readonly notes?: string;
  /** Builds the inputs, returns the timed call (which returns the handle to release). */
  readonly setup: (b: Backend, input: (shape: readonly number[], seed: number) => TensorInfo) => () => unknown;
}

const CONV: Conv2dParams = { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 };

function rows(quick: boolean): Row[] {
  const tokens = quick ? 128 : 512;
  const d = quick ? 1024 : 4096;
  const r = 16;
  const [n, c, hw] = quick ? [2, 32, 16] : [8, 64, 32];
  const convFlops = 2 * n * c * c * 9 * hw * hw;
  const elems = quick ? 1 << 18 : 1 << 20;
  const wn = quick ? 1024 : 4096;
  return [
    {
      name: 'matmul-lora-down',
      shape: `${tokens}x${d} · ${r}x${d}ᵀ`,
      flops: 2 * tokens * d * r,
      notes: 'x·Aᵀ (K = in, N = r)',
      setup: (b, t) => {
        const x = t([tokens, d], 1);
        const a = t([r, d], 2);
        return () => b.matmul(x, a, { transposeB: true }, [tokens, r]);
      },
    },
    {
      name: 'matmul-lora-up',
      shape: `${tokens}x${r} · ${d}x${r}ᵀ`,
      flops: 2 * tokens * d * r,
      notes: '(x·Aᵀ)·Bᵀ (K = r)',
      setup: (b, t) => {
        const h = t([tokens, r], 3);
        const bb = t([d, r], 4);
        return () => b.matmul(h, bb, { transposeB: true }, [tokens, d]);
      },
    },
    {
      name: 'matmul-gemv',
      shape: `1x${d} · ${d}x${d}ᵀ`,
      flops: 2 * d * d,
      bytes: 4 * d * d,
      notes: 'one decode step through a Linear (M = 1)',
      setup: (b, t) => {
        const x = t([1, d], 5);
        const w = t([d, d], 6);
        return () => b.matmul(x, w, { transposeB: true }, [1, d]);
      },
    },
    ...(['forward', 'input-grad', 'filter-grad'] as const).map(
      (kind): Row => ({
        name: `conv2d-${kind}`,
        shape: `${n}x${c}x${hw}x${hw}, 3x3x${c}→${c}`,
        flops: convFlops,
        notes: 'im2col/col2im + GEMM',
        setup: (b, t) => {
          const x = t([n, c, hw, hw], 7);
          const w = t([c, c, 3, 3], 8);
          const dy = t([n, c, hw, hw], 9);
          if (kind === 'forward') return () => b.conv2d(x, w, CONV, [n, c, hw, hw]);
          if (kind === 'input-grad') return () => b.conv2dBackpropInput(dy, w, CONV, [n, c, hw, hw]);
          return () => b.conv2dBackpropFilter(x, dy, CONV, [c, c, 3, 3]);
        },
      }),
    ),
    ...[false, true].map(
      (transposeW): Row => ({
        name: transposeW ? 'dora-weight-norm-transposed' : 'dora-weight-norm',
        shape: `${wn}x${wn} r${r}`,
        flops: 2 * wn * wn * r,
        bytes: 4 * wn * wn,
        notes: transposeW ? 'fused, W stored [in, out] (Conv1D/Embedding)' : 'fused, W [out, in]',
        setup: (b, t) => {
          const w = t([wn, wn], 10);
          const a = t([r, wn], 11);
          const bb = t([wn, r], 12);
          return () => b.weightNorm!(w, a, bb, 2, { transposeW });
        },
      }),
    ),
    {
      name: 'gelu',
      shape: `${elems}`,
      bytes: 8 * elems,
      notes: 'erf form (Cephes erff/erfcf in wasm on the cpu backend)',
      setup: (b, t) => {
        const x = t([elems], 13);
        return () => b.unary('gelu', x);
      },
    },
    {
      name: 'add-broadcast',
      shape: `${elems / 1024}x1024 + 1024`,
      bytes: 8 * elems,
      setup: (b, t) => {
        const x = t([elems / 1024, 1024], 14);
        const bias = t([1024], 15);
        return () => b.binary('add', x, bias, [elems / 1024, 1024]);
      },
    },
    {
      name: 'softmax',
      shape: `${elems / 1024}x1024`,
      bytes: 8 * elems,
      setup: (b, t) => {
        const x = t([elems / 1024, 1024], 16);
        return () => b.softmax(x, false);
      },
    },
  ];
}

const suite: BenchSuite = {
  name: 'cpu-kernels',
  async run({ quick }) {
    const cpu = createCpuBackend();
    const backend: Backend = cpu;
    const results: BenchResult[] = [];
    try {
      for (const row of rows(quick)) {
        const inputs: unknown[] = [];
        const input = (shape: readonly number[], seed: number): TensorInfo => {
          const size = shape.reduce((p, d) => p * d, 1);
          const data = backend.upload(randomMatrix(1, size, seed), shape, 'float32');
          inputs.push(data);
          return { data, shape, dtype: 'float32' };
        };
        const call = row.setup(backend, input);
        const { medianMs } = await timeIt(() => backend.release(call()), { warmup: 1, iters: quick ? 3 : 5, minMs: quick ? 0 : 300 });
        results.push({
          name: row.name,
          backend: 'cpu',
          shape: row.shape,
          medianMs,
          ...(row.flops ? { gflops: gflopsOf(row.flops, medianMs) } : {}),
          ...(row.bytes ? { gbps: gbpsOf(row.bytes, medianMs) } : {}),
          threads: cpu.threads,
          ...(row.notes ? { notes: row.notes } : {}),
        });
        for (const h of inputs) backend.release(h);
      }
    } finally {
      backend.dispose();
    }
    return results;
  },
};
export default suite;
