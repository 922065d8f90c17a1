/**
 * WebGPU measurements shared by the `webgpu-kernels` suite (whatever adapter is present, llvmpipe in CI)
 * and the H200 script (`benchmarks/h200/`): matmul per program variant, the fused weight norm against the
 * read-once floor, host cost per dispatch, and a DoRA Linear forward against LoRA's.
 *
 * GPU time is wall time around `reps` enqueued calls and one `sync`, divided by `reps`: launches overlap
 * execution, so this is sustained throughput, the number a training or decoding loop sees.
 */
import { relativeError } from '@dorajs/backend-conformance';
import { bf16ToF32, f32ToBf16, type TensorInfo } from '@dorajs/core';
import type { GpuTensor, MatmulTuning, MatmulVariant, WebGpuBackend, WeightNormVariant } from '@dorajs/backend-webgpu';
import { gbpsOf, gflopsOf, median, SuiteSkipped, type BenchResult } from '../harness.js';

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

/** The values `uploadRandom` stores (bf16-rounded for bfloat16), for host-side spot checks. */
function hostValues(n: number, seed: number, scale = 1, dtype: 'float32' | 'bfloat16' = 'float32'): Float32Array {
  const v = randomValues(n, seed, scale);
  return dtype === 'float32' ? v : Float32Array.from(v, (x) => bf16ToF32(f32ToBf16(x)));
}

/**
 * Downloads `out` and compares `samples` of its entries with `expected(i)` computed on the host: a cheap
 * correctness check of a full-size run (max |a − b| / max |b| over the samples).
 */
async function spotCheck(be: WebGpuBackend, out: GpuTensor, samples: number, expected: (i: number) => number): Promise<string> {
  const got = (await be.download({ data: out, shape: [out.size], dtype: 'float32' })) as Float32Array;
  const picked = new Float64Array(samples);
  const reference = new Float64Array(samples);
  for (let s = 0; s < samples; s++) {
    const i = Math.floor(((s + 0.5) / samples) * out.size);
    picked[s] = got[i]!;
    reference[s] = expected(i);
  }
  const err = relativeError(picked, reference);
  return `checked ${samples} entries: rel err ${err.toExponential(1)}${err > 1e-4 ? ' WRONG' : ''}`;
}

/** The backend on this machine's adapter, or `SuiteSkipped` when there is none. */
export async function createWebGpuBackendOrSkip(): Promise<WebGpuBackend> {
  const specifier = '@dorajs/backend-webgpu';
  try {
    const mod = (await import(specifier)) as typeof import('@dorajs/backend-webgpu');
    return await mod.createWebGpuBackend();
  } catch (e) {
    throw new SuiteSkipped(`no WebGPU adapter: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * Median over `trials` of (wall time of `reps` enqueued calls + sync) / reps, after one warm-up trial. Each
 * call's result is released: backend handles, or core tensors (anything with `dispose`).
 */
export async function timeGpu(
  be: WebGpuBackend,
  reps: number,
  trials: number,
  call: () => GpuTensor | GpuTensor[] | { dispose(): void },
): Promise<number> {
  const once = async () => {
    const start = performance.now();
    for (let i = 0; i < reps; i++) {
      const out = call();
      if ('dispose' in out) out.dispose();
      else for (const t of Array.isArray(out) ? out : [out]) be.release(t);
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

export async function measureMatmul(
  c: MeasureContext,
  n: number,
  variants: readonly MatmulVariant[],
  note = '',
  tuning: MatmulTuning = {},
): Promise<BenchResult[]> {
  const rows: BenchResult[] = [];
  const a = uploadRandom(c.be, [n, n], 1);
  const b = uploadRandom(c.be, [n, n], 2);
  const hostA = hostValues(n * n, 1);
  const hostB = hostValues(n * n, 2);
  c.be.setTuning(tuning);
  for (const variant of variants) {
    c.be.setMatmulVariant(variant);
    const call = () => c.be.matmul(a, b, {}, [n, n]);
    const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
    const y = call();
    const check = await spotCheck(c.be, y, 64, (i) => {
      const [m, j] = [Math.floor(i / n), i % n];
      let t = 0;
      for (let k = 0; k < n; k++) t += hostA[m * n + k]! * hostB[k * n + j]!;
      return t;
    });
    c.be.release(y);
    rows.push({
      name: 'matmul fp32',
      backend: c.label,
      shape: `${n}x${n}x${n}`,
      medianMs: ms,
      gflops: gflopsOf(2 * n ** 3, ms),
      threads: 1,
      notes: `variant ${variant}${note}; ${check}`,
    });
  }
  c.be.setMatmulVariant('auto');
  c.be.setTuning({});
  for (const t of [a, b]) c.be.release(t.data);
  return rows;
}

/** A Linear layer's base product x·Wᵀ (x [T, in], W [out, in]): short T is where split-K matters. */
export async function measureLinearMatmul(
  c: MeasureContext,
  T: number,
  out: number,
  inn: number,
  note = '',
  tuning: MatmulTuning = {},
): Promise<BenchResult[]> {
  const x = uploadRandom(c.be, [T, inn], 14);
  const w = uploadRandom(c.be, [out, inn], 15);
  c.be.setTuning(tuning);
  const call = () => c.be.matmul(x, w, { transposeB: true }, [T, out]);
  const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
  const [hx, hw] = [hostValues(T * inn, 14), hostValues(out * inn, 15)];
  const y = call();
  const check = await spotCheck(c.be, y, 64, (i) => {
    const [t, o] = [Math.floor(i / out), i % out];
    let v = 0;
    for (let k = 0; k < inn; k++) v += hx[t * inn + k]! * hw[o * inn + k]!;
    return v;
  });
  c.be.release(y);
  c.be.setTuning({});
  for (const t of [x, w]) c.be.release(t.data);
  return [
    {
      name: 'matmul fp32 x·Wᵀ',
      backend: c.label,
      shape: `${T}x${inn} · ${out}x${inn}ᵀ`,
      medianMs: ms,
      gflops: gflopsOf(2 * T * out * inn, ms),
      threads: 1,
      notes: `${note}; ${check}`,
    },
  ];
}

/** GEMV (decode): x[1, K] · W[N, K]ᵀ, memory-bound: reported in GB/s of W read. */
export async function measureGemv(
  c: MeasureContext,
  n: number,
  k: number,
  note = '',
  tuning: MatmulTuning = {},
  dtype: 'float32' | 'bfloat16' = 'float32',
): Promise<BenchResult[]> {
  const x = uploadRandom(c.be, [1, k], 3);
  const w = uploadRandom(c.be, [n, k], 4, 1, dtype);
  c.be.setTuning(tuning);
  const call = () => c.be.matmul(x, w, { transposeB: true }, [1, n]);
  const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
  const [hx, hw] = [hostValues(k, 3), hostValues(n * k, 4, 1, dtype)];
  const y = call();
  const check = await spotCheck(c.be, y, 64, (o) => {
    let v = 0;
    for (let j = 0; j < k; j++) v += hx[j]! * hw[o * k + j]!;
    return v;
  });
  c.be.release(y);
  c.be.setTuning({});
  for (const t of [x, w]) c.be.release(t.data);
  const bytes = n * k * (dtype === 'float32' ? 4 : 2);
  return [
    {
      name: `gemv ${dtype === 'float32' ? 'fp32' : 'bf16 W'} (x·Wᵀ)`,
      backend: c.label,
      shape: `1x${k} · ${n}x${k}ᵀ`,
      medianMs: ms,
      gbps: gbpsOf(bytes, ms),
      threads: 1,
      notes: `${note}${note ? '; ' : ''}${check}`,
    },
  ];
}

export async function measureWeightNorm(
  c: MeasureContext,
  out: number,
  inn: number,
  r: number,
  dtype: 'float32' | 'bfloat16',
  floorGbps?: number,
  note = '',
  variant: WeightNormVariant = 'auto',
  tuning: MatmulTuning = {},
): Promise<BenchResult[]> {
  const w = uploadRandom(c.be, [out, inn], 5, 1, dtype);
  const a = uploadRandom(c.be, [r, inn], 6, 0.01);
  const b = uploadRandom(c.be, [out, r], 7, 0.01);
  c.be.setWeightNormVariant(variant);
  c.be.setTuning(tuning);
  const call = () => c.be.weightNorm(w, a, b, 2, {});
  const ms = await timeGpu(c.be, await calibratedReps(c.be, c.trialMs, call), c.trials, call);
  const [hw, ha, hb] = [hostValues(out * inn, 5, 1, dtype), hostValues(r * inn, 6, 0.01), hostValues(out * r, 7, 0.01)];
  const norm = call();
  const check = await spotCheck(c.be, norm, 16, (o) => {
    let sq = 0;
    for (let i = 0; i < inn; i++) {
      let ba = 0;
      for (let k = 0; k < r; k++) ba += hb[o * r + k]! * ha[k * inn + i]!;
      const v = hw[o * inn + i]! + 2 * ba;
      sq += v * v;
    }
    return Math.sqrt(sq);
  });
  c.be.release(norm);
  c.be.setWeightNormVariant('auto');
  c.be.setTuning({});
  for (const t of [w, a, b]) c.be.release(t.data);
  const bytes = out * inn * (dtype === 'float32' ? 4 : 2);
  const floorMs = floorGbps ? bytes / (floorGbps * 1e6) : undefined;
  return [
    {
      name: `weight norm ${dtype === 'float32' ? 'fp32' : 'bf16 W'}`,
      backend: c.label,
      shape: `${out}x${inn} r${r}`,
      medianMs: ms,
      gbps: gbpsOf(bytes, ms),
      ...(floorMs !== undefined ? { ratio: floorMs / ms, ratioTo: 'read-once floor' } : {}),
      threads: 1,
      notes: `${
        floorMs !== undefined
          ? `floor ${floorMs.toFixed(4)} ms at ${floorGbps!.toFixed(0)} GB/s; ${(ms / floorMs).toFixed(2)}x the floor`
          : 'effective GB/s of W'
      }${note}; ${check}`,
    },
  ];
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
  const native = nativeCallCost(c.be.device, count);
  return [
    {
      name: 'dispatch host cost (record)',
      backend: c.label,
      shape: `${count} dispatches`,
      medianMs: median(record) / 1000,
      threads: 1,
      notes: `${median(record).toFixed(2)} µs per dispatch`,
    },
    {
      name: 'dispatch cost (record+submit+wait)',
      backend: c.label,
      shape: `${count} dispatches`,
      medianMs: median(total) / 1000,
      threads: 1,
      notes: `${median(total).toFixed(2)} µs per dispatch`,
    },
    ...Object.entries(native).map(([call, us]) => ({
      name: `native call ${call}`,
      backend: c.label,
      shape: `${count} calls`,
      medianMs: us / 1000,
      threads: 1,
      notes: `${us.toFixed(2)} µs per call (the bindings' floor under any dispatch)`,
    })),
  ];
}

/**
 * What the WebGPU bindings themselves cost per call on this host, with no library code around them: the
 * floor under our per-dispatch cost (a dispatch needs at least `dispatchWorkgroups`, usually a bind group).
 */
function nativeCallCost(device: GPUDevice, count: number): Record<string, number> {
  const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: 4, buffer: { type: 'storage' } }] });
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: {
      module: device.createShaderModule({
        code: '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = 1.0; }',
      }),
      entryPoint: 'main',
    },
  });
  const buffer = device.createBuffer({ size: 256, usage: 0x80 });
  const groups = [0, 1].map(() => device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer } }] }));
  const time = (f: (pass: GPUComputePassEncoder, i: number) => void): number => {
    const samples: number[] = [];
    for (let t = 0; t < 5; t++) {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, groups[0]!);
      const t0 = performance.now();
      for (let i = 0; i < count; i++) f(pass, i);
      samples.push(((performance.now() - t0) * 1000) / count);
      pass.end();
      device.queue.submit([encoder.finish()]);
    }
    return median(samples);
  };
  const out = {
    dispatchWorkgroups: time((p) => p.dispatchWorkgroups(1)),
    'setBindGroup (static)': time((p, i) => p.setBindGroup(0, groups[i & 1]!)),
  };
  buffer.destroy();
  return out;
}

/**
 * DoRA Linear forward (eval) vs LoRA's on the same kernels, in the order PEFT's layer issues them: the base
 * product x·Wᵀ first, then the LoRA branch, then (uncached) the weight norm and g = m / norm, then the
 * composition. LoRA: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ. DoRA: y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) via doraCompose (cached:
 * g precomputed). With lazy fusion (the default) the compose runs in the base matmul's epilogue, and at
 * T = 1 the uncached norm shares the GEMV's pass over W.
 */
export async function measureDoraLinear(
  c: MeasureContext,
  out: number,
  inn: number,
  r: number,
  tokens: readonly number[],
  note = '',
): Promise<BenchResult[]> {
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
    // As core's doraLinear asks for them: the base matmul with the compose in its epilogue (matmulCompose),
    // and uncached, the base GEMV and the norm from one read of W where the backend shares it.
    const loraBranch = (): [GpuTensor, GpuTensor] => {
      const ax = be.matmul(x, a, { transposeB: true }, [T, r]);
      return [ax, be.matmul(info(ax, [T, r]), b, { transposeB: true }, [T, out])];
    };
    const doraCached = () => {
      const [ax, lora] = loraBranch();
      const { base, y } = be.matmulCompose(x, w, info(lora, [T, out]), info(g, [out]), s, null, {});
      return [base, ax, lora, y];
    };
    const doraUncached = () => {
      const [ax, lora] = loraBranch();
      const shared = be.matmulWeightNorm(x, w, a, b, s, {});
      if (shared) {
        const gg = be.binary('div', m, info(shared.norm, [out]), [out]);
        const y = be.doraCompose(info(shared.base, [T, out]), info(lora, [T, out]), info(gg, [out]), s, null);
        return [shared.base, shared.norm, ax, lora, gg, y];
      }
      const n = be.weightNorm(w, a, b, s, {});
      const gg = be.binary('div', m, info(n, [out]), [out]);
      const { base, y } = be.matmulCompose(x, w, info(lora, [T, out]), info(gg, [out]), s, null, {});
      return [base, ax, lora, n, gg, y];
    };
    const reps = await calibratedReps(be, c.trialMs, loraCall);
    const tLora = await timeGpu(be, reps, c.trials, loraCall);
    const tCached = await timeGpu(be, reps, c.trials, doraCached);
    const tUncached = await timeGpu(be, reps, c.trials, doraUncached);
    const shape = `${out}x${inn} r${r} T${T}`;
    const extra = note ? `; ${note}` : '';
    rows.push({ name: 'LoRA linear forward', backend: c.label, shape, medianMs: tLora, threads: 1, notes: note || undefined });
    rows.push({
      name: 'DoRA linear forward (cached norm)',
      backend: c.label,
      shape,
      medianMs: tCached,
      ratio: tLora / tCached,
      ratioTo: 'LoRA forward',
      threads: 1,
      notes: `${(tCached / tLora).toFixed(3)}x LoRA time${extra}`,
    });
    rows.push({
      name: 'DoRA linear forward (uncached)',
      backend: c.label,
      shape,
      medianMs: tUncached,
      ratio: tLora / tUncached,
      ratioTo: 'LoRA forward',
      threads: 1,
      notes: `${(tUncached / tLora).toFixed(3)}x LoRA time${extra}`,
    });
    be.release(g);
    be.release(norm);
    be.release(x.data);
  }
  for (const t of [w, a, b, m]) be.release(t.data);
  return rows;
}
