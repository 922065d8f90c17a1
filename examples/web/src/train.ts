/**
 * The Train tab's job: `dora finetune`'s built-in MNIST job (packages/train's runMnistFinetune) run step by
 * step in the page so it can be drawn — the CNN pretrained on digits 0–4, DoRA and then LoRA trained on 5–9
 * with the same hyper-parameters, each checked merged against unmerged, the DoRA adapter offered in PEFT's
 * format.
 */
import { type Backend, noGrad, Random, type Tensor, tidy } from '@dorajs/core';
import { adapterBlobs, getPeftModel, LoraConfig, type PeftModel } from '@dorajs/peft';
import {
  collateDigits,
  type DigitExample,
  digitAccuracy,
  FINETUNE_DIGITS,
  type FinetuneMethod,
  loadMnistBase,
  MNIST_FINETUNE_DEFAULTS,
  MNIST_HEAD,
  MNIST_TARGET_MODULES,
  type MnistDigits,
  mnistSplit,
  predictDigits,
  type StepProgress,
  Trainer,
} from '@dorajs/train';
import { zipStored } from './zip.js';

export interface TrainSettings {
  readonly methods: readonly FinetuneMethod[];
  readonly maxSteps: number;
  /** Evaluate on the held-out images every N steps (0: only at the end). */
  readonly evalStep: number;
  /** Held-out images used for the during-training evaluations (evenly spaced; the final accuracy uses all). */
  readonly evalLimit: number;
  /** Held-out images whose logits are reported, evenly spaced over the held-out set. */
  readonly probeCount: number;
}

export const DEFAULT_SETTINGS: TrainSettings = {
  methods: ['dora', 'lora'],
  maxSteps: MNIST_FINETUNE_DEFAULTS.maxSteps,
  evalStep: 50,
  evalLimit: 500,
  probeCount: 16,
};

export interface RunResult {
  readonly method: FinetuneMethod;
  readonly steps: number;
  readonly accuracy: number;
  readonly mergedAccuracy: number;
  readonly mergedAgreement: number;
  readonly trainSeconds: number;
  readonly stepsPerSecond: number;
  readonly samplesPerSecond: number;
  readonly losses: readonly number[];
  readonly trainableParameters: number;
  /** Logits of the probe images (held-out indices) with the adapter unmerged: [probeCount × 10]. */
  readonly probe: { readonly indices: readonly number[]; readonly logits: readonly number[] };
}

export interface TrainEvents {
  log(line: string): void;
  start(method: FinetuneMethod, before: number, trainableParameters: number): void;
  step(method: FinetuneMethod, progress: StepProgress): void;
  evaluated(method: FinetuneMethod, step: number, accuracy: number, loss: number): void;
  finished(method: FinetuneMethod, result: RunResult): void;
  /** The DoRA adapter, zipped (adapter_config.json + adapter_model.safetensors). */
  adapter(zip: Blob): void;
}

/** Lets the page paint between steps (a message, not a 4 ms-clamped timer). */
function yieldToPage(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

function evenlySpaced<T>(items: readonly T[], count: number): { items: T[]; indices: number[] } {
  if (count >= items.length) return { items: [...items], indices: items.map((_, i) => i) };
  const indices = Array.from({ length: count }, (_, i) => Math.floor((i * items.length) / count));
  return { items: indices.map((i) => items[i]!), indices };
}

const predict = (forward: (x: Tensor) => Tensor, examples: readonly DigitExample[], collate: ReturnType<typeof collateDigits>) =>
  predictDigits(forward, examples, collate, { afterBatch: yieldToPage });

async function logitsOf(peft: PeftModel, examples: readonly DigitExample[], collate: ReturnType<typeof collateDigits>): Promise<number[]> {
  const batch = collate(examples);
  try {
    const y = tidy(() => noGrad(() => peft.forward(batch.input)));
    const values = Array.from((await y.data()) as Float32Array);
    y.dispose();
    return values;
  } finally {
    batch.input.dispose();
  }
}

export async function runTraining(
  backend: Backend,
  data: MnistDigits,
  baseWeights: Uint8Array,
  settings: TrainSettings,
  events: TrainEvents,
): Promise<{ before: number; runs: RunResult[] }> {
  const h = { ...MNIST_FINETUNE_DEFAULTS, maxSteps: settings.maxSteps };
  const split = mnistSplit(data, FINETUNE_DIGITS);
  const evalSet = evenlySpaced(split.test, settings.evalLimit).items;
  const probe = evenlySpaced(split.test, settings.probeCount);
  const collate = collateDigits(backend);
  events.log(`${split.train.length} training and ${split.test.length} held-out images of digits 5–9`);

  const base = await loadMnistBase(backend, baseWeights);
  base.eval();
  const before = digitAccuracy(await predict((x) => base.forward(x), split.test, collate), split.test);
  base.dispose();
  events.log(`the base CNN (pretrained on 0–4) gets ${(before * 100).toFixed(2)}% of held-out 5–9 right`);

  const runs: RunResult[] = [];
  for (const method of settings.methods) {
    const model = await loadMnistBase(backend, baseWeights);
    const config = new LoraConfig({
      r: h.loraR,
      loraAlpha: h.loraAlpha,
      loraDropout: h.loraDropout,
      targetModules: [...MNIST_TARGET_MODULES],
      modulesToSave: [MNIST_HEAD],
      useDora: method === 'dora',
    });
    const peft = await getPeftModel(model, config, 'default', { random: new Random(h.seed) });
    const trainableParameters = peft.getNbTrainableParameters().trainable;
    events.start(method, before, trainableParameters);
    const losses: number[] = [];
    let last: StepProgress | null = null;
    const trainer = new Trainer<DigitExample>({
      model: peft,
      objective: 'classification',
      trainDataset: split.train,
      evalDataset: evalSet,
      collate,
      args: {
        maxSteps: h.maxSteps,
        batchSize: h.batchSize,
        evalBatchSize: 256,
        gradAccum: h.gradAccum,
        lr: h.lr,
        evalStep: settings.evalStep,
        seed: h.seed,
        warmupSteps: Math.min(20, Math.floor(h.maxSteps / 10)),
      },
      callbacks: {
        onStepEnd: async (p) => {
          losses.push(p.loss);
          last = p;
          events.step(method, p);
          await yieldToPage();
        },
        onEvaluate: (m, step) => events.evaluated(method, step, m.eval_accuracy!, m.eval_loss!),
      },
    });
    let released = false;
    try {
      const out = await trainer.train();
      peft.eval();
      const unmerged = await predict((x) => peft.forward(x), split.test, collate);
      const probeLogits = await logitsOf(peft, probe.items, collate);
      if (method === 'dora') events.adapter(await zipStored(await adapterBlobs(peft)));
      const merged = await peft.mergeAndUnload();
      released = true;
      merged.eval();
      const mergedPredictions = await predict((x) => merged.forward(x), split.test, collate);
      merged.dispose();
      let agree = 0;
      for (let i = 0; i < unmerged.length; i++) if (unmerged[i] === mergedPredictions[i]) agree++;
      const p = last as StepProgress | null;
      const result: RunResult = {
        method,
        steps: out.globalStep,
        accuracy: digitAccuracy(unmerged, split.test),
        mergedAccuracy: digitAccuracy(mergedPredictions, split.test),
        mergedAgreement: unmerged.length ? agree / unmerged.length : 1,
        trainSeconds: out.metrics.train_runtime ?? p?.elapsedSeconds ?? 0,
        stepsPerSecond: out.metrics.train_steps_per_second ?? p?.stepsPerSecond ?? 0,
        samplesPerSecond: out.metrics.train_samples_per_second ?? p?.samplesPerSecond ?? 0,
        losses,
        trainableParameters,
        probe: { indices: probe.indices, logits: probeLogits },
      };
      runs.push(result);
      events.finished(method, result);
    } finally {
      trainer.dispose();
      if (!released) peft.dispose();
    }
  }
  return { before, runs };
}
