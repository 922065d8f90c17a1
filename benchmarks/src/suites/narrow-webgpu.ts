/**
 * Narrow weights on the WebGPU backend (docs/narrow-weights.md), same run, same device: the one-token GEMV
 * y = x·Wᵀ through a 4096×4096 Linear with W in float32, bfloat16, float16, int8 and nf4 (W widened in
 * registers by the row-streaming program; bytes of W read per call and time), and the fused DoRA weight
 * norm ‖W + s·B·A‖ with W in bf16 / nf4 against float32. The sibling `narrow` suite measures the CPU.
 * On llvmpipe (CI, and machines without a GPU) the "GPU" is the CPU, so these rows say what a software
 * rasterizer does with fewer bytes, not what a GPU does.
 *
 * The `compat` rows run on Dawn's OpenGL ES compatibility device with its default limits (128 invocations
 * and 16 KiB of workgroup memory per workgroup; skipped where there is none): a dense matmul on the tiled
 * program's 16×8 threads against the small-K program such a device ran before, and the weight norm (rows
 * program on 128 threads, tiles on 16×8) against the composition of separate programs it ran before (W
 * widened to a float32 buffer, then B·A, add, square, sum, sqrt), with dispatches per call.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { relativeError } from '@dorajs/backend-conformance';
import type { GpuTensor, WebGpuBackend } from '@dorajs/backend-webgpu';
import { f32ToBf16, f32ToF16, ops, QuantizedWeight, type TensorInfo, tensor, tidy, type Weight } from '@dorajs/core';
import { type BenchResult, type BenchSuite, gbpsOf, gflopsOf } from '../harness.js';
import { randomMatrix } from './matmul-reference.js';
import { createWebGpuBackendOrSkip, timeGpu, uploadRandom } from './webgpu-measure.js';

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
    results.push(...(await compatRows(quick)));
    return results;
  },
};

/** Dawn's instance must outlive its devices. */
let dawn: GPU | null = null;

/** A backend on Dawn's OpenGL ES compatibility device with default limits, or null where there is none. */
async function compatBackend(): Promise<WebGpuBackend | null> {
  try {
    // Dawn (npm `webgpu`) is the backend's optional peer dependency: resolved from the backend's package.
    const require = createRequire(createRequire(import.meta.url).resolve('@dorajs/backend-webgpu/package.json'));
    const { create } = (await import(pathToFileURL(require.resolve('webgpu')).href)) as { create: (flags: string[]) => GPU };
    dawn ??= create(['backend=opengles']);
    const adapter = await dawn.requestAdapter({ featureLevel: 'compatibility' });
    if (!adapter) return null;
    const { createWebGpuBackend } = await import('@dorajs/backend-webgpu');
    return await createWebGpuBackend({ device: await adapter.requestDevice(), destroyDevice: true });
  } catch {
    return null;
  }
}

const perCall = (n: number) => `${n} dispatch${n === 1 ? '' : 'es'} per call`;

/** Median ms of `call` and the dispatches one call records. */
async function measure(
  be: WebGpuBackend,
  reps: number,
  trials: number,
  call: () => GpuTensor,
): Promise<{ ms: number; dispatches: number }> {
  const before = be.stats().dispatches;
  be.release(call());
  be.flush();
  const dispatches = be.stats().dispatches - before;
  return { ms: await timeGpu(be, reps, trials, call), dispatches };
}

async function compatRows(quick: boolean): Promise<BenchResult[]> {
  const be = await compatBackend();
  if (!be) return [];
  const label = `webgpu compat (${be.device.limits.maxComputeInvocationsPerWorkgroup} invocations)`;
  const trials = quick ? 3 : 5;
  const rows: BenchResult[] = [];
  const read = async (t: GpuTensor) => (await be.download({ data: t, shape: [t.size], dtype: 'float32' })) as Float32Array;
  try {
    // Dense matmul x·Wᵀ: the tiled program (16×8 threads) against small-K (what this device ran before).
    const [M, K, N] = quick ? [128, 512, 512] : [512, 1024, 1024];
    const x = uploadRandom(be, [M, K], 21);
    const w = uploadRandom(be, [N, K], 22);
    const mm = () => be.matmul(x, w, { transposeB: true }, [M, N]);
    const outs: Float32Array[] = [];
    let before = 0;
    for (const variant of ['smallK', 'auto'] as const) {
      be.setMatmulVariant(variant);
      const { ms, dispatches } = await measure(be, 2, trials, mm);
      const y = mm();
      outs.push(await read(y));
      be.release(y);
      if (variant === 'smallK') before = ms;
      const tiledKeys = be.programKeys().filter((k) => k.startsWith('matmul-tiled'));
      rows.push({
        name: variant === 'smallK' ? 'compat matmul small-K (before)' : 'compat matmul tiled',
        backend: label,
        shape: `${M}x${K} · ${N}x${K}ᵀ fp32`,
        medianMs: ms,
        gflops: gflopsOf(2 * M * N * K, ms),
        threads: 1,
        ...(variant === 'smallK' ? {} : { ratio: before / ms, ratioTo: 'compat matmul small-K (before)' }),
        notes: `${perCall(dispatches)}${variant === 'smallK' ? '' : `; ${tiledKeys.join(', ')}; rel diff to small-K ${relativeError(outs[1]!, outs[0]!).toExponential(1)}`}`,
      });
    }
    be.setMatmulVariant('auto');
    for (const t of [x, w]) be.release(t.data);
    // Weight norm ‖W + s·B·A‖, W bf16 [d, d], r 16.
    const d = quick ? 512 : 1024;
    const r = 16;
    const wn: TensorInfo<GpuTensor> = uploadRandom(be, [d, d], 23, 0.05, 'bfloat16');
    const a = uploadRandom(be, [r, d], 24, 0.1);
    const b = uploadRandom(be, [d, r], 25, 0.1);
    const composed = (): GpuTensor => {
      // What a 128-invocation device ran before: W widened into a float32 buffer, then one program per step.
      const shape = [d, d];
      const temps: GpuTensor[] = [];
      const keep = (t: GpuTensor) => (temps.push(t), { data: t, shape, dtype: 'float32' as const });
      const wide = keep(be.cast(wn, 'float32'));
      const sba = keep(be.affine(keep(be.matmul(b, a, {}, shape)), 2, 0));
      const v = keep(be.binary('add', wide, sba, shape));
      const sum = be.reduce('sum', keep(be.binary('mul', v, v, shape)), [1], [d]);
      const norm = be.unary('sqrt', { data: sum, shape: [d], dtype: 'float32' });
      for (const t of [...temps, sum]) be.release(t);
      return norm;
    };
    const norms: Float32Array[] = [];
    for (const [name, variant] of [
      ['compat weight norm composed (before)', null],
      ['compat weight norm rows', 'rows'],
      ['compat weight norm tiles', 'tiles'],
    ] as const) {
      if (variant) be.setWeightNormVariant(variant);
      const call = variant ? () => be.weightNorm(wn, a, b, 2, {}) : composed;
      const { ms, dispatches } = await measure(be, 1, trials, call);
      const n = call();
      norms.push(await read(n));
      be.release(n);
      if (!variant) before = ms;
      rows.push({
        name,
        backend: label,
        shape: `W ${d}x${d} bf16, r ${r}`,
        medianMs: ms,
        threads: 1,
        ...(variant ? { ratio: before / ms, ratioTo: 'compat weight norm composed (before)' } : {}),
        notes: `${perCall(dispatches)}; ${
          variant
            ? `W widened in registers; rel diff to composed ${relativeError(norms.at(-1)!, norms[0]!).toExponential(1)}`
            : `W held as float32 (${(4 * d * d) / 2 ** 20} MiB) for the call`
        }`,
      });
    }
    for (const t of [wn, a, b]) be.release(t.data);
  } finally {
    be.dispose();
  }
  return rows;
}

export default suite;
