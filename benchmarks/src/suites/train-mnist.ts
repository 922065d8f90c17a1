/**
 * The seed example's table (PEFT's examples/dora_finetuning) for dorajs's main job: fine-tuning the
 * shipped MNIST CNN on digits 5–9 with @dorajs/train on backend-cpu. train_runtime, samples/s and
 * steps/s for LoRA and DoRA, with lora_dropout 0.05 (DoRA recomputes the base output on the dropped
 * input) and 0 (DoRA reuses the base result). medianMs is the median optimizer step; the goal is DoRA ≥
 * 0.87× LoRA samples/s.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { Random } from '@dorajs/core';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import { collateDigits, type DigitExample, loadMnistBase, MNIST_HEAD, MNIST_TARGET_MODULES, mnistSplit, Trainer } from '@dorajs/train';
import { median, type BenchResult, type BenchSuite } from '../harness.js';

const BATCH = 32;

async function run(useDora: boolean, dropout: number, steps: number) {
  const backend = createCpuBackend();
  const split = await mnistSplit([5, 6, 7, 8, 9]);
  const peft = await getPeftModel(
    await loadMnistBase(backend),
    new LoraConfig({ r: 8, loraAlpha: 16, loraDropout: dropout, targetModules: [...MNIST_TARGET_MODULES], modulesToSave: [MNIST_HEAD], useDora }),
    'default',
    { random: new Random(42) },
  );
  const stamps: number[] = [];
  const trainer = new Trainer<DigitExample>({
    model: peft,
    objective: 'classification',
    trainDataset: split.train,
    collate: collateDigits(backend),
    args: { maxSteps: steps, batchSize: BATCH, lr: 1e-2, seed: 42 },
    callbacks: { onStepEnd: () => void stamps.push(performance.now()) },
  });
  try {
    const out = await trainer.train();
    return { metrics: out.metrics, stepMs: stamps.slice(1).map((t, i) => t - stamps[i]!) };
  } finally {
    trainer.dispose();
    peft.dispose();
    backend.dispose();
  }
}

interface Summary {
  /** Median over rounds of each transformers metric. */
  readonly metrics: Record<string, number>;
  /** Median optimizer step over every round. */
  readonly stepMs: number;
}

/**
 * LoRA and DoRA alternate round by round, so a load change on a shared machine hits both alike; each
 * metric is the median over rounds.
 */
async function compare(dropout: number, rounds: number, steps: number): Promise<{ lora: Summary; dora: Summary }> {
  const collected = { lora: [] as Awaited<ReturnType<typeof run>>[], dora: [] as Awaited<ReturnType<typeof run>>[] };
  for (let i = 0; i < rounds; i++) {
    collected.lora.push(await run(false, dropout, steps));
    collected.dora.push(await run(true, dropout, steps));
  }
  const summarise = (runs: Awaited<ReturnType<typeof run>>[]): Summary => ({
    metrics: Object.fromEntries(Object.keys(runs[0]!.metrics).map((k) => [k, median(runs.map((r) => r.metrics[k]!))])),
    stepMs: median(runs.flatMap((r) => r.stepMs)),
  });
  return { lora: summarise(collected.lora), dora: summarise(collected.dora) };
}

const suite: BenchSuite = {
  name: 'train-mnist',
  async run({ quick }) {
    const rounds = quick ? 2 : 4;
    const steps = quick ? 10 : 40;
    const rows: BenchResult[] = [];
    for (const dropout of [0.05, 0]) {
      const { lora, dora } = await compare(dropout, rounds, steps);
      for (const [method, r] of [['LoRA', lora], ['DoRA', dora]] as const) {
        const m = r.metrics;
        const ratio = method === 'DoRA' ? dora.metrics.train_samples_per_second! / lora.metrics.train_samples_per_second! : undefined;
        rows.push({
          name: `mnist-finetune ${method} dropout ${dropout}`,
          backend: 'cpu',
          shape: `cnn b${BATCH} r8, ${rounds}x${steps} steps`,
          medianMs: r.stepMs,
          ...(ratio !== undefined ? { ratio, ratioTo: `LoRA dropout ${dropout}` } : {}),
          threads: 1,
          notes: `train_runtime ${m.train_runtime} s, train_samples_per_second ${m.train_samples_per_second}, train_steps_per_second ${m.train_steps_per_second} (medians of ${rounds} alternating runs)${ratio !== undefined ? `; goal ≥ 0.87× LoRA samples/s` : ''}`,
        });
      }
    }
    return rows;
  },
};
export default suite;
