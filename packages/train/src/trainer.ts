/**
 * A small Hugging Face–style Trainer: micro-batches with gradient accumulation, AdamW (PyTorch semantics)
 * under a linear warm-up/decay schedule, global-norm clipping, periodic evaluation, logging and atomic
 * checkpoints that resume bit for bit.
 *
 * Memory stays flat across steps: every forward/backward runs inside `tidy`, batches are disposed after
 * use, gradients are released by `zeroGrad`, and only the optimizer's moments persist between steps.
 */
import { AdamW, backward, ConfigError, type Module, noGrad, ops, type Parameter, type Tensor, tidy } from '@dorajs/core';
import { DataOrder } from './data-order.js';
import { CheckpointError, NonFiniteLossError } from './errors.js';
import { clipGradNorm } from './grad-clip.js';
import { causalLmLoss, classificationLoss, countTargets, shiftLabels } from './loss.js';
import { speedMetrics } from './metrics.js';
import { type ModelCheckpointer, parameterCheckpointer } from './model-checkpointer.js';
import { linearWarmupDecay, type LrSchedule } from './schedule.js';
import {
  collectGenerators,
  type LogEntry,
  loadOptimizerState,
  loadTrainerState,
  saveOptimizerState,
  saveTrainerState,
  TRAINER_STATE_FILE,
  TRAINER_STATE_VERSION,
  type TrainerState,
} from './trainer-state.js';
import { type FileSystem, join, readdir, recoverOutput, replaceFolder, rm, stat } from '#node-fs';

/** One collated micro-batch. The Trainer disposes `input` once it is done with it. */
export interface Batch {
  /** The model input: images [N, C, H, W], token ids [B, T] (int32), … */
  readonly input: Tensor;
  /** Classification: one class per example. Causal LM: [B·T] label ids (unshifted), −100 = ignore. */
  readonly labels: Int32Array;
  /** Examples in the batch. */
  readonly size: number;
}

export type Objective = 'classification' | 'causal-lm';

/** Anything indexable: an array, or a lazily decoded dataset. */
export interface Dataset<E> {
  readonly length: number;
  get(index: number): E;
}

export type DataSource<E> = readonly E[] | Dataset<E>;

export interface TrainingArguments {
  /** Optimizer steps to take (each over `gradAccum` micro-batches). */
  readonly maxSteps: number;
  /** Examples per micro-batch. Default 8. */
  readonly batchSize?: number;
  /** Examples per evaluation batch. Default `batchSize`. */
  readonly evalBatchSize?: number;
  /** Micro-batches per optimizer step. Default 1. */
  readonly gradAccum?: number;
  /** Peak learning rate. Default 3e-4 (PEFT's dora_finetuning.py). */
  readonly lr?: number;
  /** Decoupled weight decay (not applied to biases and norm weights, as transformers). Default 0.01. */
  readonly weightDecay?: number;
  /** Linear warm-up steps before the linear decay to 0 at `maxSteps`. Default 0. */
  readonly warmupSteps?: number;
  /** A custom multiplier of `lr` per step; replaces the linear warm-up/decay. */
  readonly schedule?: LrSchedule;
  readonly adamBetas?: readonly [number, number];
  readonly adamEps?: number;
  /** Clip the global gradient norm to this; 0 disables. Default 1.0 (transformers' default). */
  readonly maxGradNorm?: number;
  /** Evaluate every N optimizer steps (needs an eval dataset); 0 = never during training. */
  readonly evalStep?: number;
  /** Append a log entry (mean loss, lr, grad norm) every N steps. Default `evalStep` or 10. */
  readonly loggingSteps?: number;
  /** Write `checkpoint-<step>` under `outputDir` every N steps; 0 = never. */
  readonly saveStep?: number;
  /** Keep at most this many checkpoints (oldest removed after a successful save). */
  readonly saveTotalLimit?: number;
  /** Where checkpoints go. Required when saving or resuming from `true`. */
  readonly outputDir?: string;
  /** Seeds the data order. Default 42 (transformers' default). */
  readonly seed?: number;
  /** Shuffle the training data each epoch. Default true. */
  readonly shuffle?: boolean;
  /**
   * Gradient checkpointing (transformers' `gradient_checkpointing`): the model's decoder layers keep only
   * their inputs and run again in backward — less activation memory for one more forward per step; losses
   * and gradients are unchanged, bit for bit. The model (or a module in it, e.g. the base model a PEFT
   * model wraps) must have `gradientCheckpointingEnable()`. Default false.
   */
  readonly gradientCheckpointing?: boolean;
}

export interface StepProgress {
  readonly step: number;
  readonly maxSteps: number;
  readonly epoch: number;
  /** This step's training loss. */
  readonly loss: number;
  readonly learningRate: number;
  /** Global gradient norm before clipping (NaN when clipping is off). */
  readonly gradNorm: number;
  readonly elapsedSeconds: number;
  readonly samplesPerSecond: number;
  readonly stepsPerSecond: number;
}

export interface TrainerCallbacks {
  /** After every optimizer step: drives progress bars. */
  onStepEnd?(progress: StepProgress): void | Promise<void>;
  /** Every `loggingSteps` steps: what transformers' Trainer logs (`loss`, `grad_norm`, `learning_rate`, `epoch`). */
  onLog?(entry: LogEntry): void;
  /** After each evaluation, with `eval_*` metrics. */
  onEvaluate?(metrics: Readonly<Record<string, number>>, step: number): void;
  /** After a checkpoint folder is complete. */
  onSave?(dir: string, step: number): void;
}

export interface TrainerOptions<E> {
  readonly model: Module;
  /** Maps a batch input to logits. Default: the model's own `forward`. */
  readonly forward?: (input: Tensor) => Tensor;
  readonly objective: Objective;
  readonly trainDataset: DataSource<E>;
  readonly evalDataset?: DataSource<E>;
  /** Builds a batch (tensors on the model's backend) from examples. */
  readonly collate: (examples: readonly E[]) => Batch;
  readonly args: TrainingArguments;
  /** The parameters to train, by name. Default: every model parameter with requiresGrad. */
  readonly parameters?: readonly (readonly [string, Parameter])[];
  /** How the trained weights are saved in a checkpoint. Default: the trainable parameters. */
  readonly checkpointer?: ModelCheckpointer;
  /** The file system checkpoints are written with (tests inject faults). */
  readonly fs?: FileSystem;
  readonly callbacks?: TrainerCallbacks;
}

export interface TrainOutput {
  readonly globalStep: number;
  readonly trainingLoss: number;
  /** `train_runtime`, `train_samples_per_second`, `train_steps_per_second`, `train_loss`, `epoch`. */
  readonly metrics: Readonly<Record<string, number>>;
}

export interface TrainCallOptions {
  /** A checkpoint folder, or true for the newest `checkpoint-*` under `outputDir`. */
  readonly resumeFromCheckpoint?: string | true;
}

const CHECKPOINT_RE = /^checkpoint-(\d+)$/;

type Checkpointable = Module & { gradientCheckpointingEnable(): unknown };

/** Turns gradient checkpointing on in `model` or the outermost module in it that has it (a PEFT model's base). */
function enableGradientCheckpointing(model: Module): void {
  const all: Module[] = [model, ...model.namedModules().map(([, m]) => m)];
  const target = all.find(
    (m): m is Checkpointable => typeof (m as { gradientCheckpointingEnable?: unknown }).gradientCheckpointingEnable === 'function',
  );
  if (!target) {
    throw new ConfigError(
      `training argument gradientCheckpointing: ${model.typeName} has no gradientCheckpointingEnable() (no decoder layers to checkpoint)`,
    );
  }
  target.gradientCheckpointingEnable();
}

function asDataset<E>(source: DataSource<E>): Dataset<E> {
  if (Array.isArray(source)) {
    const array = source as readonly E[];
    return { length: array.length, get: (i) => array[i]! };
  }
  return source as Dataset<E>;
}

/** transformers' rule: biases and normalisation weights get no weight decay. */
function decays(name: string, owner: Module | undefined): boolean {
  if (name.endsWith('bias') || name.includes('.bias')) return false;
  return !(owner && /Norm$/.test(owner.typeName));
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new ConfigError(`training argument ${name} must be a positive integer, got ${value}`);
  return value;
}

export class Trainer<E> {
  readonly args: Required<Omit<TrainingArguments, 'schedule' | 'outputDir' | 'saveTotalLimit'>> &
    Pick<TrainingArguments, 'outputDir' | 'saveTotalLimit'>;
  readonly parameters: readonly (readonly [string, Parameter])[];
  /** Two AdamW instances: with and without weight decay (transformers' two parameter groups). */
  readonly optimizers: readonly AdamW[];
  globalStep = 0;
  /** Every log and evaluation entry so far (transformers' `log_history`). */
  readonly logHistory: LogEntry[] = [];

  private readonly model: Module;
  private readonly forward: (input: Tensor) => Tensor;
  private readonly objective: Objective;
  private readonly train_: Dataset<E>;
  private readonly eval_: Dataset<E> | undefined;
  private readonly collate: (examples: readonly E[]) => Batch;
  private readonly checkpointer: ModelCheckpointer;
  private readonly fs: FileSystem | undefined;
  private readonly callbacks: TrainerCallbacks;
  private readonly schedule: LrSchedule;
  private readonly dataOrder: DataOrder;
  private trainLossSum = 0;
  /** Step losses and steps since the last log entry (saved in checkpoints, so resumed logs match). */
  private windowLoss = 0;
  private windowSteps = 0;

  constructor(options: TrainerOptions<E>) {
    const a = options.args;
    positiveInt(a.maxSteps, 'maxSteps');
    const batchSize = positiveInt(a.batchSize ?? 8, 'batchSize');
    this.args = {
      maxSteps: a.maxSteps,
      batchSize,
      evalBatchSize: positiveInt(a.evalBatchSize ?? batchSize, 'evalBatchSize'),
      gradAccum: positiveInt(a.gradAccum ?? 1, 'gradAccum'),
      lr: a.lr ?? 3e-4,
      weightDecay: a.weightDecay ?? 0.01,
      warmupSteps: a.warmupSteps ?? 0,
      adamBetas: a.adamBetas ?? [0.9, 0.999],
      adamEps: a.adamEps ?? 1e-8,
      maxGradNorm: a.maxGradNorm ?? 1,
      evalStep: a.evalStep ?? 0,
      loggingSteps: a.loggingSteps ?? (a.evalStep || 10),
      saveStep: a.saveStep ?? 0,
      saveTotalLimit: a.saveTotalLimit,
      outputDir: a.outputDir,
      seed: a.seed ?? 42,
      shuffle: a.shuffle ?? true,
      gradientCheckpointing: a.gradientCheckpointing ?? false,
    };
    if (!(this.args.lr >= 0)) throw new ConfigError(`training argument lr must be ≥ 0, got ${this.args.lr}`);
    if (this.args.saveStep > 0 && !this.args.outputDir) throw new ConfigError('training argument saveStep needs outputDir');
    this.model = options.model;
    if (this.args.gradientCheckpointing) enableGradientCheckpointing(options.model);
    const own = (options.model as unknown as { forward?: (x: Tensor) => Tensor }).forward;
    if (!options.forward && typeof own !== 'function')
      throw new ConfigError(`${options.model.typeName} has no forward(input); pass { forward }`);
    this.forward = options.forward ?? ((x) => own!.call(options.model, x));
    this.objective = options.objective;
    this.train_ = asDataset(options.trainDataset);
    this.eval_ = options.evalDataset ? asDataset(options.evalDataset) : undefined;
    this.collate = options.collate;
    this.callbacks = options.callbacks ?? {};
    this.parameters = options.parameters ?? options.model.namedParameters().filter(([, p]) => p.requiresGrad);
    if (this.parameters.length === 0) throw new ConfigError(`${options.model.typeName} has no trainable parameters`);
    this.checkpointer = options.checkpointer ?? parameterCheckpointer(this.parameters);
    this.fs = options.fs;
    this.schedule = a.schedule ?? linearWarmupDecay(this.args.warmupSteps, this.args.maxSteps);
    this.dataOrder = new DataOrder(this.train_.length, this.args.seed, this.args.shuffle);

    const modules = new Map(options.model.namedModules());
    const owner = (name: string) => modules.get(name.slice(0, Math.max(0, name.lastIndexOf('.'))));
    const decay = this.parameters.filter(([n]) => decays(n, owner(n))).map(([, p]) => p);
    const noDecay = this.parameters.filter(([n]) => !decays(n, owner(n))).map(([, p]) => p);
    const hyper = { lr: this.args.lr, betas: this.args.adamBetas, eps: this.args.adamEps };
    this.optimizers = [
      new AdamW(decay, { ...hyper, weightDecay: this.args.weightDecay }),
      new AdamW(noDecay, { ...hyper, weightDecay: 0 }),
    ];
  }

  /** Runs until `maxSteps` optimizer steps have been taken (continuing a resumed run). */
  async train(options: TrainCallOptions = {}): Promise<TrainOutput> {
    if (options.resumeFromCheckpoint !== undefined) await this.resume(options.resumeFromCheckpoint);
    const { maxSteps, maxGradNorm, evalStep, loggingSteps, saveStep } = this.args;
    const start = performance.now();
    const firstStep = this.globalStep;
    let samples = 0;
    this.model.train();
    while (this.globalStep < maxSteps) {
      const lr = this.args.lr * this.schedule(this.globalStep);
      for (const o of this.optimizers) o.lr = lr;
      const { loss: stepLoss, samples: stepSamples } = await this.accumulateGradients();
      samples += stepSamples;
      const gradNorm = maxGradNorm > 0 ? await clipGradNorm(this.trainable(), maxGradNorm) : Number.NaN;
      for (const o of this.optimizers) o.step();
      this.zeroGrad();
      this.globalStep++;
      this.trainLossSum += stepLoss;
      this.windowLoss += stepLoss;
      this.windowSteps++;

      const elapsed = (performance.now() - start) / 1000;
      await this.callbacks.onStepEnd?.({
        step: this.globalStep,
        maxSteps,
        epoch: this.dataOrder.progress,
        loss: stepLoss,
        learningRate: lr,
        gradNorm,
        elapsedSeconds: elapsed,
        samplesPerSecond: samples / Math.max(elapsed, 1e-9),
        stepsPerSecond: (this.globalStep - firstStep) / Math.max(elapsed, 1e-9),
      });
      if (this.globalStep % loggingSteps === 0 || this.globalStep === maxSteps) {
        const entry: LogEntry = {
          loss: this.windowLoss / this.windowSteps,
          grad_norm: gradNorm,
          learning_rate: lr,
          epoch: this.dataOrder.progress,
          step: this.globalStep,
        };
        this.logHistory.push(entry);
        this.callbacks.onLog?.(entry);
        this.windowLoss = 0;
        this.windowSteps = 0;
      }
      if (evalStep > 0 && this.eval_ && this.globalStep % evalStep === 0) {
        await this.evaluate();
        this.model.train();
      }
      if (saveStep > 0 && this.globalStep % saveStep === 0) await this.saveCheckpoint();
    }
    const seconds = (performance.now() - start) / 1000;
    const trainingLoss = this.globalStep > 0 ? this.trainLossSum / this.globalStep : 0;
    const metrics = {
      ...speedMetrics('train', seconds, samples, this.globalStep - firstStep),
      train_loss: trainingLoss,
      epoch: this.dataOrder.progress,
    };
    this.logHistory.push({ ...metrics, step: this.globalStep });
    return { globalStep: this.globalStep, trainingLoss, metrics };
  }

  /**
   * Forward and backward over `gradAccum` micro-batches, leaving the summed gradients in `.grad`. Returns
   * the step's loss (read back once) and its example count. On any error nothing stays allocated.
   */
  private async accumulateGradients(): Promise<{ loss: number; samples: number }> {
    const { gradAccum, batchSize } = this.args;
    const micro: Batch[] = [];
    let lossSum: Tensor | null = null;
    try {
      for (let i = 0; i < gradAccum; i++) micro.push(this.collate(this.dataOrder.next(batchSize).map((j) => this.train_.get(j))));
      // Every micro-batch is normalised by the whole step's target count (transformers' num_items_in_batch).
      const normalizer = micro.reduce((n, b) => n + this.countTargets(b), 0);
      let samples = 0;
      while (micro.length) {
        const batch = micro.shift()!;
        try {
          const loss = tidy(() => {
            const l = this.loss(this.forward(batch.input), batch, normalizer);
            backward(l);
            return ops.detach(l);
          });
          const previous: Tensor | null = lossSum;
          lossSum = previous ? tidy(() => noGrad(() => ops.add(previous, loss))) : loss;
          if (previous) {
            previous.dispose();
            loss.dispose();
          }
        } finally {
          batch.input.dispose();
        }
        samples += batch.size;
      }
      const loss = (await lossSum!.float32())[0]!;
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(this.globalStep + 1, loss);
      return { loss, samples };
    } catch (e) {
      for (const b of micro) b.input.dispose();
      this.zeroGrad();
      throw e;
    } finally {
      (lossSum as Tensor | null)?.dispose();
    }
  }

  /** `eval_loss` (mean over counted targets), `eval_accuracy` (classification) and speed metrics. */
  async evaluate(dataset?: DataSource<E>): Promise<Record<string, number>> {
    const data = dataset ? asDataset(dataset) : this.eval_;
    if (!data || data.length === 0) throw new ConfigError('evaluate(): no evaluation data');
    const start = performance.now();
    const wasTraining = this.model.training;
    this.model.eval();
    let lossSum = 0;
    let counted = 0;
    let correct = 0;
    let steps = 0;
    try {
      for (let s = 0; s < data.length; s += this.args.evalBatchSize) {
        const examples: E[] = [];
        for (let i = s; i < Math.min(data.length, s + this.args.evalBatchSize); i++) examples.push(data.get(i));
        const batch = this.collate(examples);
        try {
          const n = this.countTargets(batch);
          const [loss, predicted] = tidy(() =>
            noGrad(() => {
              const logits = this.forward(batch.input);
              const l = this.loss(logits, batch, n);
              return [l, this.objective === 'classification' ? ops.argMax(logits) : null] as const;
            }),
          );
          lossSum += (await loss.float32())[0]! * n;
          loss.dispose();
          if (predicted) {
            const p = (await predicted.data()) as Int32Array;
            predicted.dispose();
            for (let i = 0; i < p.length; i++) if (p[i] === batch.labels[i]) correct++;
          }
          counted += n;
          steps++;
        } finally {
          batch.input.dispose();
        }
      }
    } finally {
      this.model.train(wasTraining);
    }
    const seconds = (performance.now() - start) / 1000;
    const metrics: Record<string, number> = { eval_loss: counted ? lossSum / counted : 0 };
    if (this.objective === 'classification') metrics.eval_accuracy = counted ? correct / counted : 0;
    Object.assign(metrics, speedMetrics('eval', seconds, data.length, steps));
    metrics.epoch = this.dataOrder.progress;
    this.logHistory.push({ ...metrics, step: this.globalStep, epoch: this.dataOrder.progress });
    this.callbacks.onEvaluate?.(metrics, this.globalStep);
    return metrics;
  }

  /** Writes `checkpoint-<step>` under `outputDir` atomically and prunes beyond `saveTotalLimit`. */
  async saveCheckpoint(): Promise<string> {
    const root = this.args.outputDir;
    if (!root) throw new ConfigError('saveCheckpoint(): no outputDir');
    const dir = join(root, `checkpoint-${this.globalStep}`);
    const fs = this.fs;
    // Leftovers of killed saves of any step are finished or removed first (core's recoverOutput).
    for (const name of await staleCheckpointNames(root)) await recoverOutput(join(root, name), { fs });
    await replaceFolder(
      dir,
      async (temp) => {
        await this.checkpointer.save(temp, fs);
        await saveOptimizerState(temp, this.optimizers, this.parameters, fs);
        await saveTrainerState(temp, this.state(), fs);
      },
      { fs },
    );
    if (this.args.saveTotalLimit !== undefined) await this.prune(root, this.args.saveTotalLimit);
    this.callbacks.onSave?.(dir, this.globalStep);
    return dir;
  }

  /** Frees the optimizer's moment buffers. The model stays with its owner. */
  dispose(): void {
    for (const o of this.optimizers) o.dispose();
  }

  private trainable(): Parameter[] {
    return this.parameters.map(([, p]) => p);
  }

  private zeroGrad(): void {
    for (const o of this.optimizers) o.zeroGrad();
  }

  private countTargets(batch: Batch): number {
    if (this.objective === 'classification') return countTargets(batch.labels);
    const [b, t] = batch.input.shape as [number, number];
    return countTargets(shiftLabels(batch.labels, b, t));
  }

  private loss(logits: Tensor, batch: Batch, normalizer: number): Tensor {
    return this.objective === 'classification'
      ? classificationLoss(logits, batch.labels, { normalizer })
      : causalLmLoss(logits, batch.labels, { normalizer });
  }

  private state(): TrainerState {
    return {
      global_step: this.globalStep,
      max_steps: this.args.maxSteps,
      epoch: this.dataOrder.progress,
      train_batch_size: this.args.batchSize,
      log_history: this.logHistory,
      dorajs: {
        version: TRAINER_STATE_VERSION,
        dataOrder: this.dataOrder.getState(),
        rngStates: collectGenerators(this.model).map((r) => r.getState()),
        trainLossSum: this.trainLossSum,
        windowLoss: this.windowLoss,
        windowSteps: this.windowSteps,
        optimizerStep: this.optimizers[0]!.state.step,
        parameterNames: this.parameters.map(([n]) => n),
      },
    };
  }

  private async resume(spec: string | true): Promise<void> {
    const dir = spec === true ? await latestCheckpoint(this.args.outputDir) : spec;
    const state = await loadTrainerState(dir);
    const names = this.parameters.map(([n]) => n);
    if (JSON.stringify(names) !== JSON.stringify(state.dorajs.parameterNames)) {
      throw new CheckpointError(
        `trainable parameters differ from the checkpoint's (${state.dorajs.parameterNames.length} saved, ${names.length} now)`,
        dir,
      );
    }
    const generators = collectGenerators(this.model);
    if (generators.length !== state.dorajs.rngStates.length) {
      throw new CheckpointError(
        `the model has ${generators.length} random generators, the checkpoint ${state.dorajs.rngStates.length}`,
        dir,
      );
    }
    await this.checkpointer.restore(dir);
    await loadOptimizerState(dir, this.optimizers, this.parameters, state.dorajs.optimizerStep);
    this.dataOrder.setState(state.dorajs.dataOrder);
    generators.forEach((g, i) => g.setState(state.dorajs.rngStates[i]!));
    this.globalStep = state.global_step;
    this.trainLossSum = state.dorajs.trainLossSum;
    const { windowLoss, windowSteps } = state.dorajs;
    const valid = Number.isFinite(windowLoss) && Number.isSafeInteger(windowSteps) && (windowSteps as number) >= 0;
    this.windowLoss = valid ? (windowLoss as number) : 0;
    this.windowSteps = valid ? (windowSteps as number) : 0;
    this.logHistory.length = 0;
    this.logHistory.push(...state.log_history);
  }

  private async prune(root: string, limit: number): Promise<void> {
    const steps = await checkpointSteps(root);
    for (const step of steps.slice(0, Math.max(0, steps.length - Math.max(1, limit)))) {
      await rm(join(root, `checkpoint-${step}`), { recursive: true, force: true });
    }
  }
}

/** `checkpoint-N` names that have temporaries of a (killed) save beside them under `root`. */
async function staleCheckpointNames(root: string): Promise<string[]> {
  const entries = await readdir(root).catch(() => [] as string[]);
  const names = new Set<string>();
  for (const e of entries) {
    const m = /^\.(checkpoint-\d+)\.(tmp|new|old)-/.exec(e);
    if (m) names.add(m[1]!);
  }
  return [...names];
}

/** Steps of the complete `checkpoint-*` folders under `root`, ascending. */
export async function checkpointSteps(root: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return [];
  }
  const steps: number[] = [];
  for (const e of entries) {
    const m = CHECKPOINT_RE.exec(e);
    if (!m) continue;
    const ok = await stat(join(root, e, TRAINER_STATE_FILE)).then(
      () => true,
      () => false,
    );
    if (ok) steps.push(Number(m[1]));
  }
  return steps.sort((a, b) => a - b);
}

/** The newest complete checkpoint folder under `root`. */
export async function latestCheckpoint(root: string | undefined): Promise<string> {
  if (!root) throw new ConfigError('resumeFromCheckpoint: true needs outputDir');
  const steps = await checkpointSteps(root);
  if (steps.length === 0) throw new CheckpointError('no checkpoint-* folder to resume from', root);
  return join(root, `checkpoint-${steps[steps.length - 1]}`);
}
