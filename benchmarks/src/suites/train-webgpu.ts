/**
 * The train suites on WebGPU: one training step DoRA vs LoRA (a 4096×4096 layer and a Llama-shaped model)
 * and the MNIST seed table, on whatever adapter this machine has. On a real GPU the layer runs at PEFT's
 * shape (batch 4 × 2048 tokens); on a software adapter (Mesa llvmpipe) every size is small. Times are
 * wall clock (the GPU does the work); peak memory counts live tensor bytes as in train-step.
 */
import type { Backend } from '@dorajs/core';
import { SuiteSkipped, type BenchResult, type BenchSuite } from '../harness.js';
import { compare, type MnistSummary } from './train-mnist.js';
import { layerWorkload, llamaWorkload, measurePair, type PairResult } from './train-step.js';

async function webgpu(): Promise<Backend & { description?: string }> {
  try {
    const mod = (await import('@dorajs/backend-webgpu')) as { createWebGpuBackend(): Promise<Backend & { description?: string }> };
    return await mod.createWebGpuBackend();
  } catch (e) {
    throw new SuiteSkipped(`no WebGPU adapter: ${(e as Error).message.split('\n')[0]}`);
  }
}

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

/** What one run measured, before it becomes rows (also how a run on another machine is recorded). */
export interface WebGpuMeasurements {
  readonly adapter: string;
  readonly steps: readonly { readonly name: string; readonly shape: string; readonly lora: PairResult; readonly dora: PairResult }[];
  readonly mnist: readonly { readonly dropout: number; readonly lora: MnistSummary; readonly dora: MnistSummary }[];
}

export function webgpuRows(m: WebGpuMeasurements): BenchResult[] {
  const rows: BenchResult[] = [];
  for (const { name, shape, lora, dora } of m.steps) {
    rows.push({
      name,
      backend: 'webgpu',
      shape,
      medianMs: lora.ms,
      threads: 1,
      notes: `LoRA on ${m.adapter}; peak ${lora.peakMiB.toFixed(1)} MiB of live tensors`,
    });
    rows.push({
      name,
      backend: 'webgpu',
      shape,
      medianMs: dora.ms,
      ratio: lora.ms / dora.ms,
      ratioTo: 'LoRA',
      threads: 1,
      notes: `DoRA on ${m.adapter}; peak ${dora.peakMiB.toFixed(1)} MiB; vs LoRA ${signed((dora.ms / lora.ms - 1) * 100)}% time (goal ≤ +15%), ${signed((dora.peakMiB / lora.peakMiB - 1) * 100)}% peak memory (goal ≤ +5%)`,
    });
  }
  for (const { dropout, lora, dora } of m.mnist) {
    for (const [method, r] of [
      ['LoRA', lora],
      ['DoRA', dora],
    ] as const) {
      const x = r.metrics;
      rows.push({
        name: `mnist-finetune ${method} dropout ${dropout}`,
        backend: 'webgpu',
        shape: 'cnn b32 r8',
        medianMs: r.stepMs,
        ...(method === 'DoRA' ? { ratio: lora.stepMs / dora.stepMs, ratioTo: `LoRA dropout ${dropout}` } : {}),
        threads: 1,
        notes: `${m.adapter}; median step; train_runtime ${x.train_runtime} s, train_samples_per_second ${x.train_samples_per_second}, train_steps_per_second ${x.train_steps_per_second}`,
      });
    }
  }
  return rows;
}

const suite: BenchSuite = {
  name: 'train-webgpu',
  async run({ quick }) {
    const device = await webgpu();
    const description = device.description ?? 'webgpu';
    const software = /opengles|llvmpipe|swiftshader/i.test(description);
    const small = quick || software;
    // One device for the suite: the runs release their tensors, not the device.
    const makeBackend = () => new Proxy(device, { get: (t, p, r) => (p === 'dispose' ? () => {} : Reflect.get(t, p, r)) });
    try {
      const llamaShape = small ? undefined : { hidden: 1024, inter: 2816, layers: 4, heads: 16, kv: 8, vocab: 8192, batch: 4, seq: 256 };
      const workloads = [small ? layerWorkload(512, 1, 64) : layerWorkload(4096, 4, 2048), llamaWorkload(small, llamaShape)];
      const steps: WebGpuMeasurements['steps'][number][] = [];
      for (const w of workloads) steps.push({ name: w.name, shape: w.shape, ...(await measurePair(w, small ? 2 : 5, makeBackend)) });
      const mnist: WebGpuMeasurements['mnist'][number][] = [];
      for (const dropout of [0.05, 0]) mnist.push({ dropout, ...(await compare(dropout, small ? 1 : 3, small ? 3 : 11, makeBackend)) });
      return webgpuRows({ adapter: software ? 'llvmpipe' : description, steps, mnist });
    } finally {
      device.dispose();
    }
  },
};
export default suite;
