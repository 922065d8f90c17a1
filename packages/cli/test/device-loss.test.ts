/**
 * WebGPU device loss in the middle of a training step: the run fails with the backend's typed
 * DeviceLostError (never a validation error, a TypeError or a hang), what it had saved stays whole, and it
 * resumes from its last checkpoint — on a fresh WebGPU device bit for bit, and on the CPU backend to the
 * end. The loss is real: the Dawn device is destroyed (`device.destroy()`) from inside the model's forward
 * pass, from a step callback while a checkpoint is due, and at arbitrary times from a timer.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { relativeError } from '@dorajs/backend-conformance';
import { createWebGpuBackend, DeviceLostError, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { type Backend, BackendError, Dropout, Layer, Linear, Random, ReLU, Sequential, type Tensor, tensor } from '@dorajs/core';
import { Trainer, type TrainerCallbacks } from '@dorajs/train';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const probe = await createWebGpuBackend().catch((e: Error) => e);
const skipReason = probe instanceof Error ? `no WebGPU adapter: ${probe.message}` : '';
if (probe instanceof Error && process.env['CI'] === 'true') throw new Error(`CI requires a WebGPU adapter: ${probe.message}`);
if (!(probe instanceof Error)) probe.dispose();

const FEATURES = 6;
const CLASSES = 3;
const STEPS = 8;
const random = new Random(1);
const data = Array.from({ length: 48 }, (_, i) => ({ x: random.fillNormal(FEATURES, i % CLASSES, 1), label: i % CLASSES }));

class Mlp extends Layer {
  net: Sequential;
  forwards = 0;
  constructor(
    backend: Backend,
    private readonly onForward?: (n: number) => void,
  ) {
    super();
    const r = new Random(3);
    this.net = new Sequential(
      new Linear(FEATURES, 16, { backend, random: r }),
      new ReLU(),
      new Dropout(0.1, new Random(4)),
      new Linear(16, CLASSES, { backend, random: r }),
    );
  }
  forward(x: Tensor): Tensor {
    const h = this.net.forward(x);
    this.onForward?.(++this.forwards);
    return h;
  }
}

function trainer(backend: Backend, model: Mlp, outputDir: string, callbacks: TrainerCallbacks = {}, maxSteps = STEPS) {
  return new Trainer({
    model,
    objective: 'classification',
    trainDataset: data,
    collate: (examples: readonly (typeof data)[number][]) => {
      const flat = new Float32Array(examples.length * FEATURES);
      examples.forEach((e, i) => flat.set(e.x, i * FEATURES));
      return {
        input: tensor(flat, [examples.length, FEATURES], { backend }),
        labels: Int32Array.from(examples, (e) => e.label),
        size: examples.length,
      };
    },
    args: { batchSize: 4, lr: 0.05, seed: 3, maxSteps, saveStep: 2, outputDir },
    callbacks,
  });
}

async function weights(model: Layer): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (const [, p] of model.namedParameters()) parts.push(Float32Array.from(await p.float32()));
  return Float32Array.from(parts.flatMap((p) => [...p]));
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Trains to the end on `backend`, resuming from `outputDir` when asked; returns the final weights. */
async function run(backend: Backend, outputDir: string, resume: boolean): Promise<Float32Array> {
  const model = new Mlp(backend);
  const t = trainer(backend, model, outputDir);
  const out = await t.train(resume ? { resumeFromCheckpoint: true } : {});
  expect(out.globalStep).toBe(STEPS);
  expect(Number.isFinite(out.metrics['train_loss'])).toBe(true);
  const w = await weights(model);
  t.dispose();
  model.dispose();
  return w;
}

/** Runs until the device is lost (`lose` destroys it); expects DeviceLostError and a clean teardown. */
async function loseDevice(
  outputDir: string,
  lose: (gpu: WebGpuBackend) => { onForward?: (n: number) => void; callbacks?: TrainerCallbacks },
  maxSteps = STEPS,
) {
  const gpu = await createWebGpuBackend();
  const hooks = lose(gpu);
  const model = new Mlp(gpu, hooks.onForward);
  const t = trainer(gpu, model, outputDir, hooks.callbacks, maxSteps);
  const error = await t.train().then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, String(error)).toBeInstanceOf(DeviceLostError);
  expect(error).toBeInstanceOf(BackendError);
  expect((error as Error).message).toMatch(/^WebGPU device lost \(destroyed\)/);
  // Teardown on a lost device does not throw.
  t.dispose();
  model.dispose();
  gpu.dispose();
  // What was saved is whole: checkpoint-N folders only, each with its three files, nothing half-written.
  const names = existsSync(outputDir) ? readdirSync(outputDir) : [];
  for (const name of names.filter((n) => !n.startsWith('.'))) {
    expect(name).toMatch(/^checkpoint-\d+$/);
    expect(readdirSync(join(outputDir, name)).sort()).toEqual(['model.safetensors', 'optimizer.safetensors', 'trainer_state.json']);
  }
  return names.filter((n) => !n.startsWith('.'));
}

describe.skipIf(skipReason !== '')(`WebGPU device loss during training${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('mid-step loss is a DeviceLostError; the run resumes from its last checkpoint bit for bit on WebGPU and finishes on CPU', async () => {
    const dir = tempDir('dora-device-loss-');
    const gpu = await createWebGpuBackend();
    const expected = await run(gpu, join(dir, 'reference'), false);
    gpu.dispose();

    // Lost in the forward pass of step 5, after checkpoint-4 was saved.
    const out = join(dir, 'lost');
    const saved = await loseDevice(out, (g) => ({ onForward: (n) => n === 5 && g.device.destroy() }));
    expect(saved).toEqual(['checkpoint-2', 'checkpoint-4']);

    const fresh = await createWebGpuBackend();
    const resumed = await run(fresh, join(dir, 'lost'), true);
    fresh.dispose();
    expect(Buffer.compare(bits(resumed), bits(expected)), 'WebGPU resume is not bit-identical').toBe(0);

    // The same checkpoint on another backend: it must finish (not bit-identical; float32 on both sides).
    const cpu = createCpuBackend();
    const onCpu = await run(cpu, join(dir, 'lost'), true);
    cpu.dispose();
    expect(relativeError(onCpu, expected)).toBeLessThanOrEqual(1e-4);
  });

  it('a loss during a checkpoint save, or at any moment, is a DeviceLostError and leaves no half checkpoint', async () => {
    const dir = tempDir('dora-device-loss-');
    // From the step callback of step 4, just before checkpoint-4 is written: the save fails, checkpoint-2 stays.
    const saved = await loseDevice(join(dir, 'save'), (g) => ({
      callbacks: { onStepEnd: (p) => void (p.step === 4 && g.device.destroy()) },
    }));
    expect(saved).toEqual(['checkpoint-2']);
    // From a timer, at arbitrary points of steps, backward passes, optimizer updates and saves.
    for (const ms of [1, 7, 20, 45]) {
      const out = join(dir, `timer-${ms}`);
      // Long enough a run that the timer always fires before the end.
      await loseDevice(
        out,
        (g) => {
          setTimeout(() => g.device.destroy(), ms);
          return {};
        },
        100_000,
      );
    }
  });
});
