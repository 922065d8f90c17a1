/**
 * The seed example's table (PEFT's examples/dora_finetuning) for dorajs's main job: fine-tuning the
 * shipped MNIST CNN on digits 5–9 with @dorajs/train on backend-cpu. train_runtime, samples/s and
 * steps/s for LoRA and DoRA, with lora_dropout 0.05 (DoRA recomputes the base output on the dropped
 * input) and 0 (DoRA reuses the base result). medianMs is the median CPU time of an optimizer step (this
 * process only, so other processes' load does not skew the LoRA/DoRA ratio); the goal is DoRA ≥ 0.87×
 * LoRA samples/s.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, Random } from '@dorajs/core';
import { loadMnistDigits } from '@dorajs/cli';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import {
  collateDigits,
  type DigitExample,
  loadMnistBase,
  MNIST_HEAD,
  MNIST_TARGET_MODULES,
  mnistSplit,
  round,
  Trainer,
} from '@dorajs/train';
import { median, type BenchResult, type BenchSuite } from '../harness.js';
import { cpuMs } from './train-memory.js';

const BATCH = 32;

type BackendFactory = () => Backend | Promise<Backend>;

async function run(useDora: boolean, dropout: number, steps: number, makeBackend: BackendFactory) {
  const backend = await makeBackend();
  const split = mnistSplit(await loadMnistDigits(), [5, 6, 7, 8, 9]);
  const peft = await getPeftModel(
    await loadMnistBase(backend),
    new LoraConfig({
      r: 8,
      loraAlpha: 16,
      loraDropout: dropout,
      targetModules: [...MNIST_TARGET_MODULES],
      modulesToSave: [MNIST_HEAD],
      useDora,
    }),
    'default',
    { random: new Random(42) },
  );
  const stamps: number[] = [];
  const cpu: number[] = [];
  const trainer = new Trainer<DigitExample>({
    model: peft,
    objective: 'classification',
    trainDataset: split.train,
    collate: collateDigits(backend),
    args: { maxSteps: steps, batchSize: BATCH, lr: 1e-2, seed: 42 },
    callbacks: {
      onStepEnd: () => {
        stamps.push(performance.now());
        cpu.push(cpuMs());
      },
    },
  });
  try {
    const out = await trainer.train();
    const deltas = (xs: number[]) => xs.slice(1).map((t, i) => t - xs[i]!);
    return { metrics: out.metrics, stepMs: deltas(stamps), stepCpuMs: deltas(cpu) };
  } finally {
    trainer.dispose();
    peft.dispose();
    backend.dispose();
  }
}

export interface MnistSummary {
  /** Median over rounds of each transformers metric. */
  readonly metrics: Record<string, number>;
  /** Median optimizer step over every round: wall time, and CPU time of this process. */
  readonly stepMs: number;
  readonly stepCpuMs: number;
}

/**
 * LoRA and DoRA alternate round by round, so a load change on a shared machine hits both alike; each
 * metric is the median over rounds.
 */
export async function compare(
  dropout: number,
  rounds: number,
  steps: number,
  makeBackend: BackendFactory = () => createCpuBackend(),
): Promise<{ lora: MnistSummary; dora: MnistSummary }> {
  const collected = { lora: [] as Awaited<ReturnType<typeof run>>[], dora: [] as Awaited<ReturnType<typeof run>>[] };
  for (let i = 0; i < rounds; i++) {
    collected.lora.push(await run(false, dropout, steps, makeBackend));
    collected.dora.push(await run(true, dropout, steps, makeBackend));
  }
  const summarise = (runs: Awaited<ReturnType<typeof run>>[]): MnistSummary => ({
    // Rounded as transformers rounds speed metrics (a median of two values can carry float noise).
    metrics: Object.fromEntries(
      Object.keys(runs[0]!.metrics).map((k) => [k, round(median(runs.map((r) => r.metrics[k]!)), k === 'train_runtime' ? 4 : 3)]),
    ),
    stepMs: median(runs.flatMap((r) => r.stepMs)),
    stepCpuMs: median(runs.flatMap((r) => r.stepCpuMs)),
  });
  return { lora: summarise(collected.lora), dora: summarise(collected.dora) };
}

const suite: BenchSuite = {
  name: 'train-mnist',
  async run({ quick }) {
    // Many short alternating runs: load on a shared machine changes over seconds, so both methods see it alike.
    const rounds = quick ? 4 : 10;
    const steps = quick ? 6 : 11;
    const rows: BenchResult[] = [];
    for (const dropout of [0.05, 0]) {
      const { lora, dora } = await compare(dropout, rounds, steps);
      for (const [method, r] of [
        ['LoRA', lora],
        ['DoRA', dora],
      ] as const) {
        const m = r.metrics;
        // Samples/s ratio from CPU time per step: the wall-clock ratio swings with other processes' load.
        const ratio = method === 'DoRA' ? lora.stepCpuMs / dora.stepCpuMs : undefined;
        const wallRatio = dora.metrics.train_samples_per_second! / lora.metrics.train_samples_per_second!;
        rows.push({
          name: `mnist-finetune ${method} dropout ${dropout}`,
          backend: 'cpu',
          shape: `cnn b${BATCH} r8, ${rounds}x${steps} steps`,
          medianMs: r.stepCpuMs,
          ...(ratio !== undefined ? { ratio, ratioTo: `LoRA dropout ${dropout}` } : {}),
          threads: 1,
          notes:
            `median CPU ms per step (wall ${r.stepMs.toFixed(1)} ms); train_runtime ${m.train_runtime} s, train_samples_per_second ${m.train_samples_per_second}, ` +
            `train_steps_per_second ${m.train_steps_per_second} (medians of ${rounds} alternating runs)` +
            (ratio !== undefined ? `; goal ≥ 0.87× LoRA samples/s (wall-clock ratio ${wallRatio.toFixed(2)}×)` : ''),
        });
      }
    }
    return rows;
  },
};
export default suite;
