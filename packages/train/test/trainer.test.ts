import type { Backend } from '@dorajs/core';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  LabelOutOfRangeError,
  type ModelCheckpointer,
  parameterCheckpointer,
  Trainer,
  type TrainingArguments,
} from '../src/index.js';
import { bitsEqual, blobs, collateFor, type Example, Mlp, snapshot, testBackend } from './helpers.js';

const FEATURES = 6;
const CLASSES = 3;
let backend: Backend;
let root: string;
const all = blobs(90, FEATURES, CLASSES, 1);
const train = all.slice(0, 60);
const evalSet = all.slice(60);

beforeAll(async () => {
  backend = await testBackend();
  root = await mkdtemp(join(tmpdir(), 'dorajs-train-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function makeTrainer(
  args: Partial<TrainingArguments> & { maxSteps: number },
  extra: { checkpointer?: (m: Mlp) => ModelCheckpointer } = {},
) {
  const model = new Mlp(backend, FEATURES, 16, CLASSES, 3);
  const trainer = new Trainer<Example>({
    model,
    objective: 'classification',
    trainDataset: train,
    evalDataset: evalSet,
    collate: collateFor(backend, FEATURES),
    args: { batchSize: 4, gradAccum: 2, lr: 0.05, warmupSteps: 2, maxGradNorm: 0.5, seed: 11, ...args },
    ...(extra.checkpointer ? { checkpointer: extra.checkpointer(model) } : {}),
  });
  return { model, trainer };
}

describe('Trainer', () => {
  it('learns: eval accuracy rises and metrics carry transformers names', async () => {
    const { trainer } = makeTrainer({ maxSteps: 30, evalStep: 15, lr: 0.02 });
    const before = await trainer.evaluate();
    const out = await trainer.train();
    const after = await trainer.evaluate();
    expect(after.eval_loss).toBeLessThan(before.eval_loss!);
    expect(after.eval_accuracy).toBeGreaterThan(0.9);
    expect(Object.keys(out.metrics).sort()).toEqual([
      'epoch',
      'train_loss',
      'train_runtime',
      'train_samples_per_second',
      'train_steps_per_second',
    ]);
    expect(out.globalStep).toBe(30);
    expect(out.metrics.epoch).toBeCloseTo((30 * 8) / 60, 6);
    expect(trainer.logHistory.some((e) => 'eval_accuracy' in e && e.step === 15)).toBe(true);
    trainer.dispose();
  });

  it('resuming from a checkpoint is bit-identical to an uninterrupted run', async () => {
    const straight = makeTrainer({ maxSteps: 6 });
    const straightOut = await straight.trainer.train();
    const expected = await snapshot(straight.model);

    const dir = join(root, 'resume');
    const first = makeTrainer({ maxSteps: 6, saveStep: 3, outputDir: dir });
    // Stop after step 3 the way a crash would: by throwing from a callback once the checkpoint exists.
    const stop = new Error('stop');
    const interrupted = new Trainer<Example>({
      model: first.model,
      objective: 'classification',
      trainDataset: train,
      collate: collateFor(backend, FEATURES),
      args: { batchSize: 4, gradAccum: 2, lr: 0.05, warmupSteps: 2, maxGradNorm: 0.5, seed: 11, maxSteps: 6, saveStep: 3, outputDir: dir },
      callbacks: {
        onSave: () => {
          throw stop;
        },
      },
    });
    await expect(interrupted.train()).rejects.toBe(stop);
    first.trainer.dispose();
    interrupted.dispose();

    // A fresh process: new model (different init would not matter: weights come from the checkpoint).
    const resumed = makeTrainer({ maxSteps: 6, outputDir: dir });
    const out = await resumed.trainer.train({ resumeFromCheckpoint: true });
    expect(out.globalStep).toBe(6);
    const got = await snapshot(resumed.model);
    for (const [name, values] of expected) expect(bitsEqual(got.get(name)!, values), name).toBe(true);
    expect(out.trainingLoss).toBe(straightOut.trainingLoss);
    straight.trainer.dispose();
    resumed.trainer.dispose();
  });

  it('keeps the number of live buffers constant from step 2 to step 10', async () => {
    const { trainer } = makeTrainer({ maxSteps: 10 });
    const live = new Map<number, number>();
    const t = new Trainer<Example>({
      model: new Mlp(backend, FEATURES, 16, CLASSES, 3),
      objective: 'classification',
      trainDataset: train,
      collate: collateFor(backend, FEATURES),
      args: { batchSize: 4, gradAccum: 2, maxSteps: 10, maxGradNorm: 0.5 },
      callbacks: { onStepEnd: (p) => void live.set(p.step, backend.liveBuffers()) },
    });
    await t.train();
    expect(live.get(10)).toBe(live.get(2));
    t.dispose();
    trainer.dispose();
  });

  it('an interrupted save leaves the previous checkpoint intact and resumable', async () => {
    const dir = join(root, 'interrupted');
    let saves = 0;
    const failing = (m: Mlp): ModelCheckpointer => {
      const inner = parameterCheckpointer(m.namedParameters());
      return {
        save: async (d) => {
          await inner.save(d);
          if (++saves === 2) throw new Error('disk full');
        },
        restore: (d) => inner.restore(d),
      };
    };
    const { trainer } = makeTrainer({ maxSteps: 4, saveStep: 2, outputDir: dir }, { checkpointer: failing });
    await expect(trainer.train()).rejects.toThrow('disk full');
    expect((await readdir(dir)).sort()).toEqual(['checkpoint-2']);
    trainer.dispose();
    const again = makeTrainer({ maxSteps: 4, outputDir: dir });
    const out = await again.trainer.train({ resumeFromCheckpoint: true });
    expect(out.globalStep).toBe(4);
    again.trainer.dispose();
  });

  it('refuses to resume into a different set of trainable parameters', async () => {
    const dir = join(root, 'mismatch');
    const { trainer } = makeTrainer({ maxSteps: 1, saveStep: 1, outputDir: dir });
    await trainer.train();
    trainer.dispose();
    const model = new Mlp(backend, FEATURES, 16, CLASSES, 3);
    const other = new Trainer<Example>({
      model,
      parameters: model.namedParameters().slice(1),
      objective: 'classification',
      trainDataset: train,
      collate: collateFor(backend, FEATURES),
      args: { maxSteps: 2, outputDir: dir },
    });
    await expect(other.train({ resumeFromCheckpoint: true })).rejects.toThrow(CheckpointError);
    other.dispose();
  });

  it('a bad batch mid-step raises a typed error and leaves nothing allocated', async () => {
    const model = new Mlp(backend, FEATURES, 16, CLASSES, 3);
    const bad = [...train.slice(0, 12), { x: new Float32Array(FEATURES), label: 7 }];
    const t = new Trainer<Example>({
      model,
      objective: 'classification',
      trainDataset: bad,
      collate: collateFor(backend, FEATURES),
      args: { batchSize: 4, gradAccum: 4, maxSteps: 3, shuffle: false },
    });
    const before = backend.liveBuffers();
    await expect(t.train()).rejects.toThrow(LabelOutOfRangeError);
    expect(backend.liveBuffers()).toBe(before);
    expect(model.parameters().every((p) => p.grad === null)).toBe(true);
    t.dispose();
  });

  it('stops on a non-finite loss, naming the step', async () => {
    const model = new Mlp(backend, FEATURES, 16, CLASSES, 3);
    const poisoned = train.map((e, i) => (i === 5 ? { ...e, x: new Float32Array(FEATURES).fill(Number.NaN) } : e));
    const t = new Trainer<Example>({
      model,
      objective: 'classification',
      trainDataset: poisoned,
      collate: collateFor(backend, FEATURES),
      args: { batchSize: 4, maxSteps: 3, shuffle: false },
    });
    await expect(t.train()).rejects.toThrow(/loss is NaN at step 2/);
    expect(t.globalStep).toBe(1);
    t.dispose();
  });

  it('gradientCheckpointing on a model without decoder layers to checkpoint is refused, naming the argument', () => {
    expect(() => makeTrainer({ maxSteps: 1, gradientCheckpointing: true })).toThrow(
      /^training argument gradientCheckpointing: \w+ has no gradientCheckpointingEnable\(\) \(no decoder layers to checkpoint\)$/,
    );
  });

  it('gradient accumulation matches one large batch', async () => {
    const run = async (batchSize: number, gradAccum: number) => {
      const model = new Mlp(backend, FEATURES, 16, CLASSES, 3, 0);
      const t = new Trainer<Example>({
        model,
        objective: 'classification',
        trainDataset: train.slice(0, 48),
        collate: collateFor(backend, FEATURES),
        args: { batchSize, gradAccum, maxSteps: 3, lr: 0.01, shuffle: false, maxGradNorm: 0 },
      });
      await t.train();
      t.dispose();
      return snapshot(model);
    };
    const small = await run(4, 4);
    const large = await run(16, 1);
    for (const [name, values] of large) {
      const other = small.get(name)!;
      const diff = Math.max(...values.map((v, i) => Math.abs(v - other[i]!)));
      expect(diff, name).toBeLessThan(1e-5);
    }
  });
});
