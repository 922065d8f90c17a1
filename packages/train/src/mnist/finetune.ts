/**
 * The main job: the shipped CNN (pretrained on digits 0–4) is fine-tuned on digits 5–9 with DoRA on its
 * conv and linear layers and the 10-way head trained in full (modulesToSave). It prints held-out accuracy
 * before and after, the same run with plain LoRA for comparison, and the merged model's accuracy (which
 * must equal the unmerged one), then writes the adapter in PEFT's format.
 */
import { type Backend, noGrad, ops, Random, type Tensor, tidy } from '@dorajs/core';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import {
  backendFor,
  type FinetuneMethod,
  type FinetuneOptions,
  describeTargets,
  parseTargetModules,
  resolveHyperParameters,
  type TargetModules,
  type ResolvedHyperParameters,
} from '../finetune-options.js';
import { checkOutputPath } from '#node-fs';
import { formatMetrics } from '../metrics.js';
import { peftCheckpointer } from '../peft-checkpointer.js';
import { Trainer } from '../trainer.js';
import { collateDigits, type DigitExample, type MnistDigits, type MnistSplit, mnistSplit } from './data.js';
import { loadMnistBase, MNIST_BASE_FILE, MNIST_HEAD, MNIST_TARGET_MODULES } from './model.js';

export const FINETUNE_DIGITS = [5, 6, 7, 8, 9] as const;
export const KNOWN_DIGITS = [0, 1, 2, 3, 4] as const;

export const MNIST_FINETUNE_DEFAULTS: Omit<ResolvedHyperParameters, 'useDora'> = {
  loraR: 8,
  loraAlpha: 16,
  loraDropout: 0.05,
  batchSize: 32,
  gradAccum: 1,
  maxSteps: 500,
  evalStep: 100,
  lr: 1e-2,
  seed: 42,
};

export interface MnistFinetuneOptions extends FinetuneOptions {
  /** The images (the `mnist` package's data: readMnistDigits in Node, digitsFromJson in a page). */
  readonly data: MnistDigits;
  /** Also train the other method (LoRA when useDora, DoRA otherwise) for the comparison. Default true. */
  readonly compare?: boolean;
  /** Base weights: a file (Node) or its bytes (default: the shipped asset). */
  readonly baseWeights?: string | Uint8Array;
  /** Use at most this many training images per digit (quick runs and tests). */
  readonly perClassLimit?: number;
}

export interface MnistRunResult {
  readonly method: FinetuneMethod;
  /** Held-out accuracy on 5–9 after fine-tuning (adapter unmerged). */
  readonly accuracy: number;
  /** The same after mergeAndUnload. */
  readonly mergedAccuracy: number;
  /** Fraction of held-out images whose merged prediction equals the unmerged one. */
  readonly mergedAgreement: number;
  /** Held-out accuracy on 0–4 after fine-tuning on 5–9 (how much was forgotten). */
  readonly knownDigitsAccuracy: number;
  /** transformers' names: train_runtime, train_samples_per_second, train_steps_per_second, train_loss, epoch. */
  readonly metrics: Readonly<Record<string, number>>;
  readonly trainableParameters: number;
}

export interface MnistFinetuneResult {
  readonly backend: string;
  /** The base model's held-out accuracy on 5–9 (it was never shown them) and on 0–4. */
  readonly before: { readonly accuracy: number; readonly knownDigitsAccuracy: number };
  /** The requested method first, then the comparison run if any. */
  readonly runs: readonly MnistRunResult[];
  readonly adapterDir: string | null;
}

/**
 * Predicted class per example, 256 at a time (eval mode is the caller's business). `afterBatch` runs after
 * each batch: a page yields there so it can paint.
 */
export async function predictDigits(
  forward: (x: Tensor) => Tensor,
  examples: readonly DigitExample[],
  collate: ReturnType<typeof collateDigits>,
  options: { readonly afterBatch?: () => Promise<void> } = {},
): Promise<Int32Array> {
  const out = new Int32Array(examples.length);
  for (let s = 0; s < examples.length; s += 256) {
    const batch = collate(examples.slice(s, s + 256));
    try {
      const p = tidy(() => noGrad(() => ops.argMax(forward(batch.input))));
      out.set((await p.data()) as Int32Array, s);
      p.dispose();
    } finally {
      batch.input.dispose();
    }
    await options.afterBatch?.();
  }
  return out;
}

/** The share of `examples` whose label is the predicted class. */
export function digitAccuracy(predicted: Int32Array, examples: readonly DigitExample[]): number {
  let correct = 0;
  for (let i = 0; i < examples.length; i++) if (predicted[i] === examples[i]!.label) correct++;
  return examples.length ? correct / examples.length : 0;
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

export async function runMnistFinetune(options: MnistFinetuneOptions): Promise<MnistFinetuneResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const h = resolveHyperParameters(options, MNIST_FINETUNE_DEFAULTS);
  const targets = parseTargetModules(options.targetModules, MNIST_TARGET_MODULES);
  // The output folder is checked before the run, not after it.
  if (options.output) await checkOutputPath(options.output, { kind: 'folder', ...(options.fs ? { fs: options.fs } : {}) });
  const { backend, reason } = await backendFor(options.backend);
  const baseFile = options.baseWeights ?? MNIST_BASE_FILE;
  const split = mnistSplit(
    options.data,
    FINETUNE_DIGITS,
    options.perClassLimit !== undefined ? { perClassLimit: options.perClassLimit } : {},
  );
  const known = mnistSplit(options.data, KNOWN_DIGITS);
  const collate = collateDigits(backend);

  log(
    `MNIST fine-tuning: CNN pretrained on digits 0-4, adapters trained on digits 5-9 (${split.train.length} train / ${split.test.length} held-out images)`,
  );
  log(`backend: ${backend.name} (${reason})`);
  const base = await loadMnistBase(backend, baseFile);
  base.eval();
  const before = {
    accuracy: digitAccuracy(await predictDigits((x) => base.forward(x), split.test, collate), split.test),
    knownDigitsAccuracy: digitAccuracy(await predictDigits((x) => base.forward(x), known.test, collate), known.test),
  };
  base.dispose();
  log(`before: held-out accuracy on 5-9 ${pct(before.accuracy)}, on 0-4 ${pct(before.knownDigitsAccuracy)}`);

  const methods: FinetuneMethod[] = h.useDora ? ['dora', 'lora'] : ['lora', 'dora'];
  if (options.compare === false) methods.pop();
  const runs: MnistRunResult[] = [];
  let adapterDir: string | null = null;
  for (const method of methods) {
    const primary = method === methods[0];
    const run = await trainOne(backend, method, h, targets, {
      baseFile,
      split,
      known,
      collate,
      options,
      log,
      output: primary ? options.output : undefined,
    });
    runs.push(run);
    if (primary && options.output) adapterDir = options.output;
  }

  log('');
  log('method  held-out 5-9 before -> after   merged (agreement)   0-4 after   train_runtime  samples/s  steps/s  train_loss');
  for (const r of runs) {
    log(
      `${(r.method === 'dora' ? 'DoRA' : 'LoRA').padEnd(6)}  ${pct(before.accuracy).padStart(7)} -> ${pct(r.accuracy).padStart(7)}      ${pct(r.mergedAccuracy).padStart(7)} (${pct(r.mergedAgreement)})   ${pct(r.knownDigitsAccuracy).padStart(7)}   ${`${r.metrics.train_runtime!.toFixed(2)} s`.padStart(12)}  ${r.metrics.train_samples_per_second!.toFixed(1).padStart(9)}  ${r.metrics.train_steps_per_second!.toFixed(2).padStart(7)}  ${r.metrics.train_loss!.toFixed(4)}`,
    );
  }
  if (runs.length === 2) {
    const [a, b] = runs as [MnistRunResult, MnistRunResult];
    const dora = a.method === 'dora' ? a : b;
    const lora = a.method === 'dora' ? b : a;
    log(`DoRA/LoRA samples/s: ${(dora.metrics.train_samples_per_second! / lora.metrics.train_samples_per_second!).toFixed(3)}x`);
  }
  if (adapterDir) log(`adapter (${methods[0] === 'dora' ? 'DoRA' : 'LoRA'}, PEFT format) written to ${adapterDir}`);
  return { backend: backend.name, before, runs, adapterDir };
}

interface RunContext {
  readonly baseFile: string | Uint8Array;
  readonly split: MnistSplit;
  readonly known: MnistSplit;
  readonly collate: ReturnType<typeof collateDigits>;
  readonly options: MnistFinetuneOptions;
  readonly log: (line: string) => void;
  readonly output: string | undefined;
}

async function trainOne(
  backend: Backend,
  method: FinetuneMethod,
  h: ResolvedHyperParameters,
  targets: TargetModules,
  ctx: RunContext,
): Promise<MnistRunResult> {
  const label = method === 'dora' ? 'DoRA' : 'LoRA';
  const model = await loadMnistBase(backend, ctx.baseFile);
  const config = new LoraConfig({
    r: h.loraR,
    loraAlpha: h.loraAlpha,
    loraDropout: h.loraDropout,
    targetModules: targets,
    modulesToSave: [MNIST_HEAD],
    useDora: method === 'dora',
  });
  const peft = await getPeftModel(model, config, 'default', { random: new Random(h.seed) });
  const trainableParameters = peft.getNbTrainableParameters().trainable;
  ctx.log(
    `${label}: r=${h.loraR} alpha=${h.loraAlpha} dropout=${h.loraDropout} on ${describeTargets(targets)} + ${MNIST_HEAD} (modules_to_save); ${peft.printTrainableParameters(() => {})}`,
  );
  const trainer = new Trainer<DigitExample>({
    model: peft,
    objective: 'classification',
    trainDataset: ctx.split.train,
    evalDataset: ctx.split.test,
    collate: ctx.collate,
    checkpointer: peftCheckpointer(peft),
    args: {
      maxSteps: h.maxSteps,
      batchSize: h.batchSize,
      evalBatchSize: 256,
      gradAccum: h.gradAccum,
      lr: h.lr,
      evalStep: h.evalStep,
      seed: h.seed,
      warmupSteps: Math.min(20, Math.floor(h.maxSteps / 10)),
    },
    callbacks: {
      onStepEnd: (p) => ctx.options.onProgress?.({ ...p, method }),
      onEvaluate: (m, step) =>
        ctx.log(`${label} step ${step}: eval_loss ${m.eval_loss!.toFixed(4)}, eval_accuracy ${pct(m.eval_accuracy!)}`),
    },
  });
  let released = false;
  try {
    const out = await trainer.train();
    ctx.log(formatMetrics(`${label} train`, out.metrics));
    peft.eval();
    const forward = (x: Tensor) => peft.forward(x);
    const unmerged = await predictDigits(forward, ctx.split.test, ctx.collate);
    const knownDigitsAccuracy = digitAccuracy(await predictDigits(forward, ctx.known.test, ctx.collate), ctx.known.test);
    if (ctx.output) {
      const { fs, report } = ctx.options;
      await peft.savePretrained(ctx.output, { ...(fs ? { fs } : {}), ...(report ? { report } : {}) });
    }
    const merged = await peft.mergeAndUnload();
    released = true;
    merged.eval();
    const mergedPredictions = await predictDigits((x) => merged.forward(x), ctx.split.test, ctx.collate);
    merged.dispose();
    let agree = 0;
    for (let i = 0; i < unmerged.length; i++) if (unmerged[i] === mergedPredictions[i]) agree++;
    return {
      method,
      accuracy: digitAccuracy(unmerged, ctx.split.test),
      mergedAccuracy: digitAccuracy(mergedPredictions, ctx.split.test),
      mergedAgreement: unmerged.length ? agree / unmerged.length : 1,
      knownDigitsAccuracy,
      metrics: out.metrics,
      trainableParameters,
    };
  } finally {
    trainer.dispose();
    if (!released) peft.dispose();
  }
}
