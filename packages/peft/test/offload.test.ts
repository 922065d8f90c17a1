/**
 * ephemeralGpuOffload with two CPU backend instances standing in for CPU + GPU: the DoRA norms (init,
 * merges) run on the offload instance, nothing stays allocated there, and the results equal the
 * non-offloaded ones. Loading a checkpoint with magnitudes computes no norm at all.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendError, type Layer, Random } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getPeftModel, LoraConfig, PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { KINDS, perturb } from './helpers/behaviour.js';
import { counting } from './helpers/counting-backend.js';
import { relativeError } from '@dorajs/backend-conformance';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-offload-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.each(KINDS.map((k) => [k.name, k] as const))('ephemeral offload: %s', (_, kind) => {
  it('init norms and merges run on the offload backend, leave nothing there, and match the plain path', async () => {
    const home = counting(cpu());
    const offload = counting(cpu());
    const modelA = kind.build(home.backend);
    const modelB = kind.build(home.backend);
    modelB.loadStateDict(modelA.stateDict());
    const config = new LoraConfig({ r: 2, targetModules: [...kind.targets], useDora: true, initLoraWeights: false });
    const plain = await getPeftModel(modelA, config, 'default', { random: new Random(3) });
    home.reset();
    const off = await getPeftModel(modelB, config.with({ runtimeConfig: { ephemeralGpuOffload: offload.backend } }), 'default', {
      random: new Random(3),
    });
    expect(offload.count('weightNorm')).toBe(kind.targets.length);
    expect(home.count('weightNorm')).toBe(0);
    expect(offload.backend.liveBuffers()).toBe(0);
    const mags = (p: PeftModel) =>
      p
        .namedParameters()
        .filter(([k]) => k.includes('magnitude'))
        .map(([, v]) => v);
    const ma = mags(plain);
    const mb = mags(off);
    for (let i = 0; i < ma.length; i++) expect(relativeError(await mb[i]!.float32(), await ma[i]!.float32())).toBe(0);

    perturb(plain, 5);
    perturb(off, 5);
    plain.eval();
    off.eval();
    const x = kind.input(home.backend, new Random(1));
    offload.reset();
    await plain.mergeAdapter();
    expect(offload.calls).toHaveLength(0);
    home.reset();
    await off.mergeAdapter();
    expect(offload.count('weightNorm')).toBe(kind.targets.length);
    expect(home.count('weightNorm', 'matmul')).toBe(0);
    expect(offload.backend.liveBuffers()).toBe(0);
    expect(relativeError(await off.forward(x).float32(), await plain.forward(x).float32())).toBe(0);
    await off.unmergeAdapter();
    expect(offload.backend.liveBuffers()).toBe(0);
  });

  it('fromPretrained with a checkpoint that has magnitudes computes no norm; merges then use the offload backend', async () => {
    const home = counting(cpu());
    const offload = counting(cpu());
    const model = kind.build(home.backend);
    const copy = kind.build(home.backend);
    copy.loadStateDict(model.stateDict());
    const source = await getPeftModel(model, new LoraConfig({ r: 2, targetModules: [...kind.targets], useDora: true }), 'default', {
      random: new Random(4),
    });
    perturb(source, 8);
    const path = join(dir, kind.name);
    await source.savePretrained(path);
    home.reset();
    const loaded = await PeftModel.fromPretrained(copy, path, { ephemeralGpuOffload: offload.backend });
    expect(offload.calls).toHaveLength(0);
    expect(home.count('weightNorm')).toBe(0);
    const x = kind.input(home.backend, new Random(2));
    source.eval();
    const expected = await source.forward(x).float32();
    const merged = (await loaded.mergeAndUnload()) as Layer;
    expect(offload.count('weightNorm')).toBe(kind.targets.length);
    expect(offload.backend.liveBuffers()).toBe(0);
    expect(relativeError(await merged.forward(x).float32(), expected)).toBeLessThan(1e-5);
  });
});

describe('ephemeralGpuOffload: true', () => {
  it('registers and uses the WebGPU backend on demand (no side-effect import needed) and equals the plain path', async () => {
    const kind = KINDS[0]!;
    const modelA = kind.build(cpu());
    const modelB = kind.build(modelA.parameters()[0]!.backend);
    modelB.loadStateDict(modelA.stateDict());
    const config = new LoraConfig({ r: 2, targetModules: [...kind.targets], useDora: true, initLoraWeights: false });
    const plain = await getPeftModel(modelA, config, 'default', { random: new Random(3) });
    const off = await getPeftModel(modelB, config.with({ runtimeConfig: { ephemeralGpuOffload: true } }), 'default', {
      random: new Random(3),
    });
    const mags = (p: PeftModel) =>
      p
        .namedParameters()
        .filter(([k]) => k.includes('magnitude'))
        .map(([, v]) => v);
    const [ma, mb] = [mags(plain), mags(off)];
    expect(mb.length).toBe(ma.length);
    // The norms came from the GPU kernels (another summation order): equal to float32 rounding, 1e-4.
    for (let i = 0; i < ma.length; i++) expect(relativeError(await mb[i]!.float32(), await ma[i]!.float32())).toBeLessThan(1e-4);
  });

  it('without an installed WebGPU backend the error is typed and the model is untouched', async () => {
    const { resolveOffloadBackend } = await import('../src/tuner/offload.js');
    const { registerBackend } = await import('@dorajs/core');
    // Stand in for "not installed": a registered factory that cannot start.
    registerBackend('webgpu', () => {
      throw new Error('no adapter');
    });
    await expect(resolveOffloadBackend(true)).rejects.toThrow(BackendError);
  });
});
