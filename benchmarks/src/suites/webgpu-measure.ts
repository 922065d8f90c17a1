/**
 * WebGPU measurements shared by the `webgpu-kernels` suite (whatever adapter is present, llvmpipe in CI)
 * and the H200 script (`benchmarks/h200/`): matmul per program variant, the fused weight norm against the
 * read-once floor, host cost per dispatch, and a DoRA Linear forward against LoRA's.
 *
 * GPU time is wall time around `reps` enqueued calls and one `sync`, divided by `reps`: launches overlap
 * execution, so this is sustained throughput, the number a training or decoding loop sees.
 */
import { f32ToBf16, type TensorInfo } from '@dorajs/core';
import type { GpuTensor, MatmulVariant, WebGpuBackend } from '@dorajs/backend-webgpu';
import { gbpsOf, gflopsOf, median, type BenchResult } from '../harness.js';

type Info = TensorInfo<GpuTensor>;

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 0x100000000) * 2 - 1) * scale;
  }
  return out;
}

export function uploadRandom(be: WebGpuBackend, shape: number[], seed: number, scale = 1, dtype: 'float32' | 'bfloat16' = 'float32'): Info {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randomValues(n, seed, scale);
  const data = dtype === 'float32' ? be.upload(v, shape, 'float32') : be.upload(Uint16Array.from(v, f32ToBf16), shape, 'bfloat16');
  return { data, shape, dtype };
}

/** Median over `trials` of (wall time of `reps` enqueued calls + sync) / reps, after one warm-up trial. */
export async function timeGpu(be: WebGpuBackend, reps: number, trials: number, call: () => GpuTensor | GpuTensor[]): Promise<number> {
  const once = async () => {
    const start = performance.now();
    for (let i = 0; i < reps; i++) {
      const out = call();
      for (const t of Array.isArray(out) ? out : [out]) be.release(t);
    }
    await be.sync();
    return (performance.now() - start) / reps;
  };
  await once();
  const samples: number[] = [];
  for (let t = 0; t < trials; t++) samples.push(await once());
  return median(samples);
}

/** Enough repetitions that one trial takes about `targetMs` given a first estimate of one call. */
export async function calibratedReps(be: WebGpuBackend, targetMs: number, call: () => GpuTensor | GpuTensor[]): Promise<number> {
  // timeGpu warms up first, so pipeline compilation does not shrink the estimate; 10 calls amortise the
  // submit-and-wait round trip of the estimate itself.
  const one = await timeGpu(be, 10, 1, call);
  return Math.max(10, Math.min(5000, Math.round(targetMs / Math.max(one, 1e-3))));
}

export interface MeasureContext {
  readonly be: WebGpuBackend;
  /** Label in results, e.g. 'webgpu (llvmpipe)'. */
  readonly label: string;
  readonly trials: number;
  /** Wall time one trial should take. */
  readonly trialMs: number;
}

export async function measureMatmul(c: MeasureContext, n: number, variants: readonly MatmulVariant[], note = ''): Promise<BenchResult[]> {
  const rows: BenchResult[] = [];
  const a = uploadRandom(c.be, [n, n], 1);
  const b = uploadRandom(c.be, [n, n], 2);
  for (const variant of variants) {
    c.be.setMatmulVariant(variant);
    const call = () => c.be.matmul(a, b, {}, [n, n]);
    const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
    rows.push({ name: 'matmul fp32', backend: c.label, shape: `${n}x${n}x${n}`, medianMs: ms, gflops: gflopsOf(2 * n ** 3, ms), threads: 1, notes: `variant ${variant}${note}` });
  }
  c.be.setMatmulVariant('auto');
  for (const t of [a, b]) c.be.release(t.data);
  return rows;
}

/** GEMV (decode): x[1, K] · W[N, K]ᵀ, memory-bound: reported in GB/s of W read. */
export async function measureGemv(c: MeasureContext, n: number, k: number): Promise<BenchResult[]> {
  const x = uploadRandom(c.be, [1, k], 3);
  const w = uploadRandom(c.be, [n, k], 4);
  const call = () => c.be.matmul(x, w, { transposeB: true }, [1, n]);
  const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
  for (const t of [x, w]) c.be.release(t.data);
  return [{ name: 'gemv fp32 (x·Wᵀ)', backend: c.label, shape: `1x${k} · ${n}x${k}ᵀ`, medianMs: ms, gbps: gbpsOf(n * k * 4, ms), threads: 1 }];
}

export async function measureWeightNorm(c: MeasureContext, out: number, inn: number, r: number, dtype: 'float32' | 'bfloat16', floorGbps?: number, note = ''): Promise<BenchResult[]> {
  const w = uploadRandom(c.be, [out, inn], 5, 1, dtype);
  const a = uploadRandom(c.be, [r, inn], 6, 0.01);
  const b = uploadRandom(c.be, [out, r], 7, 0.01);
  const call = () => c.be.weightNorm(w, a, b, 2, {});
  const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
  for (const t of [w, a, b]) c.be.release(t.data);
  const bytes = out * inn * (dtype === 'float32' ? 4 : 2);
  const floorMs = floorGbps ? bytes / (floorGbps * 1e6) : undefined;
  return [{
    name: `weight norm ${dtype === 'float32' ? 'fp32' : 'bf16 W'}`,
    backend: c.label,
    shape: `${out}x${inn} r${r}`,
    medianMs: ms,
    gbps: gbpsOf(bytes, ms),
    ...(floorMs !== undefined ? { ratio: floorMs / ms, ratioTo: 'read-once floor' } : {}),
    threads: 1,
    notes: (floorMs !== undefined ? `floor ${floorMs.toFixed(4)} ms at ${floorGbps!.toFixed(0)} GB/s; ${(ms / floorMs).toFixed(2)}x the floor` : 'effective GB/s of W') + note,
  }];
}

/**
 * Host cost of one dispatch: recording `count` tiny kernels (no waiting), and separately recording plus
 * one submit and wait. The GPU work is negligible, so this is the library's per-op overhead.
 */
export async function measureDispatch(c: MeasureContext, count: number): Promise<BenchResult[]> {
  const x = uploadRandom(c.be, [4], 8);
  const run = () => {
    for (let i = 0; i < count; i++) c.be.release(c.be.affine(x, 1.0001, 0));
  };
  run();
  await c.be.sync();
  const record: number[] = [];
  const total: number[] = [];
  for (let t = 0; t < Math.max(5, c.trials); t++) {
    const s0 = performance.now();
    run();
    const s1 = performance.now();
    await c.be.sync();
    const s2 = performance.now();
    record.push(((s1 - s0) * 1000) / count);
    total.push(((s2 - s0) * 1000) / count);
  }
  c.be.release(x.data);
  return [
    { name: 'dispatch host cost (record)', backend: c.label, shape: `${count} dispatches`, medianMs: median(record) / 1000, threads: 1, notes: `${median(record).toFixed(2)} µs per dispatch` },
    { name: 'dispatch cost (record+submit+wait)', backend: c.label, shape: `${count} dispatches`, medianMs: median(total) / 1000, threads: 1, notes: `${median(total).toFixed(2)} µs per dispatch` },
  ];
}

/**
 * DoRA Linear forward (eval) vs LoRA's on the same kernels: LoRA y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ; DoRA adds the
 * weight norm (uncached) and composes with g = m/‖W + s·B·A‖ (cached: g precomputed).
 */
export async function measureDoraLinear(c: MeasureContext, out: number, inn: number, r: number, tokens: readonly number[]): Promise<BenchResult[]> {
  const be = c.be;
  const w = uploadRandom(be, [out, inn], 9);
  const a = uploadRandom(be, [r, inn], 10, 0.01);
  const b = uploadRandom(be, [out, r], 11, 0.01);
  const m = uploadRandom(be, [out], 12);
  const s = 2;
  const info = (data: GpuTensor, shape: number[]): Info => ({ data, shape, dtype: 'float32' });
  const rows: BenchResult[] = [];
  for (const T of tokens) {
    const x = uploadRandom(be, [T, inn], 13);
    const branch = (): [GpuTensor, GpuTensor, GpuTensor] => {
      const base = be.matmul(x, w, { transposeB: true }, [T, out]);
      const ax = be.matmul(x, a, { transposeB: true }, [T, r]);
      const lora = be.matmul(info(ax, [T, r]), b, { transposeB: true }, [T, out]);
      return [base, ax, lora];
    };
    const loraCall = () => {
      const [base, ax, lora] = branch();
      const scaled = be.affine(info(lora, [T, out]), s, 0);
      const y = be.binary('add', info(base, [T, out]), info(scaled, [T, out]), [T, out]);
      return [base, ax, lora, scaled, y];
    };
    const norm = be.weightNorm(w, a, b, s, {});
    const g = be.binary('div', m, info(norm, [out]), [out]);
    const composeWith = (gg: GpuTensor) => {
      const [base, ax, lora] = branch();
      const y = be.doraCompose(info(base, [T, out]), info(lora, [T, out]), info(gg, [out]), s, null);
      return [base, ax, lora, y];
    };
    const doraCached = () => composeWith(g);
    const doraUncached = () => {
      const n = be.weightNorm(w, a, b, s, {});
      const gg = be.binary('div', m, info(n, [out]), [out]);
      return [n, gg, ...composeWith(gg)];
    };
    const reps = await calibratedReps(be, c.trialMs, loraCall);
    const tLora = await timeGpu(be, reps, c.trials, loraCall);
    const tCached = await timeGpu(be, reps, c.trials, doraCached);
    const tUncached = await timeGpu(be, reps, c.trials, doraUncached);
    const shape = `${out}x${inn} r${r} T${T}`;
    rows.push({ name: 'LoRA linear forward', backend: c.label, shape, medianMs: tLora, threads: 1 });
    rows.push({ name: 'DoRA linear forward (cached norm)', backend: c.label, shape, medianMs: tCached, ratio: tLora / tCached, ratioTo: 'LoRA forward', threads: 1, notes: `${(tCached / tLora).toFixed(3)}x LoRA time` });
    rows.push({ name: 'DoRA linear forward (uncached)', backend: c.label, shape, medianMs: tUncached, ratio: tLora / tUncached, ratioTo: 'LoRA forward', threads: 1, notes: `${(tUncached / tLora).toFixed(3)}x LoRA time` });
    be.release(g);
    be.release(norm);
    be.release(x.data);
  }
  for (const t of [w, a, b, m]) be.release(t.data);
  return rows;
}
