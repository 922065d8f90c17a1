/**
 * PEFT's custom-model behaviour table (tests/test_custom_models.py) for MLP, Embedding, Conv2d and Conv1D,
 * each with and without DoRA: save/load round trip, merge ≈ unmerged, unmerge restores, disabled = base,
 * delete, switching, caching = uncached.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, type Layer, Random, type Tensor } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DoraCaching, getPeftModel, isLoraLayer, LoraConfig, MergeError, PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { KINDS, type Kind, perturb } from './helpers/behaviour.js';
import { relativeError } from '@dorajs/backend-conformance';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-behaviour-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const out = (m: Layer | PeftModel, x: Tensor) => m.forward(x).float32();

/** A base model and an identical copy (same weights) to load adapters into. */
function twins(kind: Kind, backend: Backend): [Layer, Layer] {
  const a = kind.build(backend);
  const b = kind.build(backend);
  b.loadStateDict(a.stateDict());
  return [a, b];
}

async function setup(kind: Kind, useDora: boolean, names: readonly string[] = ['default']) {
  const backend = cpu();
  const [model, copy] = twins(kind, backend);
  const x = kind.input(backend, new Random(5));
  const base = await out(model, x);
  const peft = await getPeftModel(model, new LoraConfig({ r: 2, loraAlpha: 4, targetModules: [...kind.targets], useDora }), names[0], {
    random: new Random(11),
  });
  for (const n of names.slice(1))
    await peft.addAdapter(n, new LoraConfig({ r: 4, loraAlpha: 3, targetModules: [...kind.targets], useDora }));
  perturb(peft, 17);
  peft.eval();
  return { backend, peft, copy, x, base };
}

const TABLE = KINDS.flatMap((kind) =>
  [false, true].map((useDora) => ({ kind, useDora, label: `${kind.name} ${useDora ? 'DoRA' : 'LoRA'}` })),
);

describe.each(TABLE)('$label', ({ kind, useDora }) => {
  it('adapter changes the output; disabled = base', async () => {
    const { peft, x, base } = await setup(kind, useDora);
    expect(relativeError(await out(peft, x), base)).toBeGreaterThan(1e-3);
    expect(relativeError(await peft.disableAdapter(() => out(peft, x)), base)).toBeLessThan(1e-6);
    // Leaving the scope re-enables the adapter.
    expect(relativeError(await out(peft, x), base)).toBeGreaterThan(1e-3);
  });

  it('save/load round trip gives the same outputs', async () => {
    const { peft, copy, x } = await setup(kind, useDora);
    const path = join(dir, `${kind.name}-${useDora}`);
    await peft.savePretrained(path);
    const loaded = await PeftModel.fromPretrained(copy, path);
    expect(relativeError(await out(loaded, x), await out(peft, x))).toBeLessThan(1e-6);
    const a = peft.stateDict();
    for (const [k, v] of loaded.stateDict()) expect(relativeError(await v.float32(), await a.get(k)!.float32()), k).toBe(0);
  });

  it('merge ≈ unmerged, idempotent; unmerge restores weights and outputs', async () => {
    const { peft, x } = await setup(kind, useDora);
    const before = await out(peft, x);
    const weights = await Promise.all(peft.loraLayers().map((l) => l.weight.float32()));
    await peft.mergeAdapter();
    expect(relativeError(await out(peft, x), before)).toBeLessThan(1e-5);
    await peft.mergeAdapter(); // warns "All adapters are already merged", changes nothing
    expect(relativeError(await out(peft, x), before)).toBeLessThan(1e-5);
    await peft.unmergeAdapter();
    const after = await Promise.all(peft.loraLayers().map((l) => l.weight.float32()));
    after.forEach((w, i) => expect(relativeError(w, weights[i]!)).toBeLessThan(1e-5));
    expect(relativeError(await out(peft, x), before)).toBeLessThan(1e-5);
    const merged = await peft.mergeAndUnload({ safeMerge: true });
    expect(merged.namedModules().some(([, m]) => isLoraLayer(m))).toBe(false);
    expect(relativeError(await out(merged as Layer, x), before)).toBeLessThan(1e-5);
  });

  it('switching adapters without reloading; delete removes every trace', async () => {
    const { peft, x, base } = await setup(kind, useDora, ['first', 'second']);
    const first = await out(peft, x);
    peft.setAdapter('second');
    const second = await out(peft, x);
    expect(relativeError(second, first)).toBeGreaterThan(1e-3);
    peft.setAdapter('first');
    expect(relativeError(await out(peft, x), first)).toBe(0);
    await peft.mergeAdapter();
    expect(() => peft.deleteAdapter('first')).toThrow(MergeError);
    await peft.unmergeAdapter();
    peft.deleteAdapter('first');
    expect(peft.activeAdapters).toEqual(['second']);
    expect([...peft.stateDict().keys()].some((k) => k.includes('.first'))).toBe(false);
    // merge + unmerge round the base weights (PEFT's W/f − Δ), hence 1e-5
    expect(relativeError(await out(peft, x), second)).toBeLessThan(1e-5);
    peft.deleteAdapter('second');
    expect(relativeError(await out(peft, x), base)).toBeLessThan(1e-5);
  });

  it('DoRA caching gives the uncached outputs', async () => {
    const { peft, x } = await setup(kind, useDora);
    const plain = await out(peft, x);
    const cached = await DoraCaching.scope(async () => [await out(peft, x), await out(peft, x)]);
    for (const c of cached) expect(relativeError(c, plain)).toBe(0);
  });
});
