import { type Backend, Random } from '@dorajs/core';
import { getPeftModel, LoraConfig, PeftModel } from '@dorajs/peft';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collateDigits, type DigitExample, loadMnistBase, mnistSplit, peftCheckpointer, runMnistFinetune, Trainer } from '../src/index.js';
import { bitsEqual, mnistData, snapshot, testBackend } from './helpers.js';

let backend: Backend;
let root: string;
beforeAll(async () => {
  backend = await testBackend();
  root = await mkdtemp(join(tmpdir(), 'dorajs-mnist-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function doraTrainer(maxSteps: number, extra: { outputDir?: string; saveStep?: number; onStepEnd?: () => void } = {}) {
  const split = mnistSplit(await mnistData(), [5, 6, 7, 8, 9], { perClassLimit: 40 });
  const base = await loadMnistBase(backend);
  const config = new LoraConfig({
    r: 4,
    loraAlpha: 8,
    loraDropout: 0.05,
    targetModules: ['conv1', 'conv2', 'fc1'],
    modulesToSave: ['head'],
    useDora: true,
  });
  const peft = await getPeftModel(base, config, 'default', { random: new Random(5) });
  const trainer = new Trainer<DigitExample>({
    model: peft,
    objective: 'classification',
    trainDataset: split.train,
    collate: collateDigits(backend),
    checkpointer: peftCheckpointer(peft),
    args: {
      maxSteps,
      batchSize: 8,
      gradAccum: 2,
      lr: 5e-3,
      warmupSteps: 2,
      seed: 3,
      ...(extra.outputDir ? { outputDir: extra.outputDir } : {}),
      ...(extra.saveStep ? { saveStep: extra.saveStep } : {}),
    },
    ...(extra.onStepEnd ? { callbacks: { onStepEnd: extra.onStepEnd } } : {}),
  });
  return { peft, trainer };
}

describe('DoRA training of the MNIST CNN through PEFT', () => {
  it('resumes from a PEFT checkpoint bit-identically (dropout on, grad accumulation, warm-up)', async () => {
    const straight = await doraTrainer(6);
    await straight.trainer.train();
    const expected = await snapshot(straight.peft);

    const dir = join(root, 'resume');
    const stop = new Error('stop');
    await expect(
      (async () => {
        let steps = 0;
        const t = await doraTrainer(6, {
          outputDir: dir,
          saveStep: 3,
          onStepEnd: () => {
            if (++steps === 4) throw stop;
          },
        });
        try {
          await t.trainer.train();
        } finally {
          t.trainer.dispose();
          t.peft.dispose();
        }
      })(),
    ).rejects.toBe(stop);
    const files = await readdir(join(dir, 'checkpoint-3'));
    expect(files).toEqual(
      expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json']),
    );

    const resumed = await doraTrainer(6, { outputDir: dir });
    await resumed.trainer.train({ resumeFromCheckpoint: join(dir, 'checkpoint-3') });
    const got = await snapshot(resumed.peft);
    expect([...got.keys()]).toEqual([...expected.keys()]);
    for (const [name, values] of expected) expect(bitsEqual(got.get(name)!, values), name).toBe(true);
    for (const t of [straight, resumed]) {
      t.trainer.dispose();
      t.peft.dispose();
    }
  });

  it('keeps memory flat: after step 2 and step 10 only parameters and AdamW moments are alive', async () => {
    const live: number[] = [];
    const { peft, trainer } = await doraTrainer(10, { onStepEnd: () => void live.push(backend.liveBuffers()) });
    const before = backend.liveBuffers();
    await trainer.train();
    const trainable = trainer.parameters.length;
    expect(live[9]).toBe(live[1]);
    // Two moments per trainable parameter, plus each DoRA layer's reused norm (one [out] vector, kept from
    // one training forward to the next), and nothing else (no dense B·A).
    const memos = peft
      .namedModules()
      .map(([, m]) => (m as { normMemo?: { size: number } }).normMemo)
      .filter((m) => m !== undefined);
    expect(memos.length).toBe(3); // conv1, conv2, fc1
    expect(memos.every((m) => m.size > 0)).toBe(true);
    expect(live[9]! - before).toBe(2 * trainable + memos.length);
    trainer.dispose();
    peft.dispose();
  });
});

describe('runMnistFinetune', () => {
  it('with maxSteps 2 trains DoRA and LoRA, reports accuracies, and writes a PEFT adapter that loads back', async () => {
    const output = join(root, 'adapter');
    const lines: string[] = [];
    const progress: number[] = [];
    const result = await runMnistFinetune({
      data: await mnistData(),
      backend,
      maxSteps: 2,
      output,
      log: (l) => lines.push(l),
      onProgress: (p) => progress.push(p.step),
    });
    expect(result.runs.map((r) => r.method)).toEqual(['dora', 'lora']);
    expect(result.before.accuracy).toBeLessThan(0.05);
    expect(result.before.knownDigitsAccuracy).toBeGreaterThan(0.95);
    for (const r of result.runs) {
      expect(r.mergedAccuracy).toBe(r.accuracy);
      expect(r.mergedAgreement).toBe(1);
      expect(r.metrics.train_steps_per_second).toBeGreaterThan(0);
    }
    expect(progress).toEqual([1, 2, 1, 2]);
    expect(lines.join('\n')).toMatch(/DoRA .*->/);
    const config = JSON.parse(await readFile(join(output, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', use_dora: true, r: 8, lora_alpha: 16, modules_to_save: ['head'] });
    expect([...config.target_modules].sort()).toEqual(['conv1', 'conv2', 'fc1']);
    const loaded = await PeftModel.fromPretrained(await loadMnistBase(backend), output);
    expect(loaded.loraLayers()).toHaveLength(3);
    loaded.dispose();
  });

  // The main job itself (about a minute on 2 cores): the acceptance numbers, checked on every CI run.
  it('the full job: base ≥ 95% on 0–4, DoRA ≥ 90% on held-out 5–9, merged = unmerged, LoRA compared', async () => {
    const result = await runMnistFinetune({ data: await mnistData(), backend, log: () => {} });
    expect(result.before.knownDigitsAccuracy).toBeGreaterThanOrEqual(0.95);
    const [dora, lora] = result.runs;
    expect(dora!.method).toBe('dora');
    expect(dora!.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(dora!.mergedAccuracy).toBe(dora!.accuracy);
    expect(dora!.mergedAgreement).toBe(1);
    expect(lora!.method).toBe('lora');
    expect(lora!.accuracy).toBeGreaterThanOrEqual(0.9);
  }, 600_000);
});
