/** PeftModel operations not covered by the behaviour table: safe merge, partial merges, unload, subfolders, backends. */
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Layer, noGrad, ops, Random, tensor } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectWarningsAsync, getPeftModel, isLoraLayer, LoraConfig, type LoraLinear, MergeError, PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { counting } from './helpers/counting-backend.js';
import { MLP } from './helpers/models.js';
import { relativeError } from '@dorajs/backend-conformance';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-model-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const x16 = (backend: import('@dorajs/core').Backend) => tensor(new Random(9).fillNormal(3 * 16), [3, 16], { backend });

async function twoAdapterMlp(backend = cpu()) {
  const peft = await getPeftModel(new MLP(backend), new LoraConfig({ r: 2, targetModules: ['lin1', 'lin2'], useDora: true }), 'default', {
    random: new Random(1),
  });
  await peft.addAdapter('other', new LoraConfig({ r: 3, loraAlpha: 6, targetModules: ['lin2'], useDora: true }));
  perturb(peft, 4);
  peft.eval();
  return { peft, backend, x: x16(backend) };
}

describe('safe merge', () => {
  it('throws naming the module when a merged weight has NaN/Inf, and installs nothing', async () => {
    const { peft, x } = await twoAdapterMlp();
    const layer = peft.getBaseModel().getSubmodule('lin2') as LoraLinear;
    const b = layer.lora_B.get('default')!.weight;
    const values = await b.float32();
    values[3] = Number.POSITIVE_INFINITY;
    b.assign(tensor(values, [...b.shape], { backend: b.backend }));
    const weights = await Promise.all(peft.loraLayers().map((l) => l.weight.float32()));
    const err = await peft.mergeAdapter(undefined, { safeMerge: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MergeError);
    expect((err as Error).message).toMatch(
      /NaNs detected in the merged weights of module 'lin2'. The adapter 'default' seems to be broken/,
    );
    await expect(peft.mergeAndUnload({ safeMerge: true })).rejects.toThrow(MergeError);
    const after = await Promise.all(peft.loraLayers().map((l) => l.weight.float32()));
    after.forEach((w, i) => expect(w).toEqual(weights[i]));
    expect(peft.loraLayers().some((l) => l.merged)).toBe(false);
    // Without safeMerge the broken weights go in, as in PEFT.
    await peft.mergeAdapter();
    expect(Array.from(await peft.forward(x).float32()).some((v) => !Number.isFinite(v))).toBe(true);
  });
});

describe('partial merges and unload', () => {
  it('mergeAndUnload({ adapterNames }) merges only those adapters', async () => {
    const { peft, x } = await twoAdapterMlp();
    peft.setAdapter('other');
    const expected = await peft.forward(x).float32();
    peft.setAdapter('default');
    const merged = (await peft.mergeAndUnload({ adapterNames: ['other'] })) as Layer;
    expect(merged.namedModules().some(([, m]) => isLoraLayer(m))).toBe(false);
    expect(relativeError(await merged.forward(x).float32(), expected)).toBeLessThan(1e-5);
  });

  it('unload() restores the plain layers without merging; getBaseModel() is the wrapped model', async () => {
    const backend = cpu();
    const model = new MLP(backend);
    const x = x16(backend);
    const base = await model.forward(x).float32();
    const peft = await getPeftModel(model, new LoraConfig({ r: 2, targetModules: ['lin1', 'lin2'], useDora: true }));
    perturb(peft, 3);
    expect(peft.getBaseModel()).toBe(model);
    const unloaded = peft.unload();
    expect(unloaded).toBe(model);
    expect([...unloaded.stateDict().keys()]).toEqual(['lin1.weight', 'lin1.bias', 'lin2.weight']);
    expect(relativeError(await unloaded.forward(x).float32(), base)).toBe(0);
  });

  it('merge warns when everything is merged already; unmerge warns when nothing is', async () => {
    const { peft } = await twoAdapterMlp();
    await peft.mergeAdapter();
    const { warnings } = await collectWarningsAsync(() => peft.mergeAdapter());
    expect(warnings.map((w) => w.message)).toEqual(['All adapters are already merged, nothing to do.']);
    await peft.unmergeAdapter();
    const { warnings: w2 } = await collectWarningsAsync(() => peft.unmergeAdapter());
    expect(w2.map((w) => w.code)).toEqual(['nothing-merged']);
  });

  it('a forward with adapters disabled unmerges merged layers first (as PEFT) and returns the base output', async () => {
    const { peft, x } = await twoAdapterMlp();
    const base = await peft.disableAdapter(() => peft.forward(x).float32());
    await peft.mergeAdapter();
    const disabled = await peft.disableAdapter(async () => peft.forward(x).float32());
    expect(relativeError(disabled, base)).toBeLessThan(1e-5);
    expect(peft.loraLayers().some((l) => l.merged)).toBe(false);
  });
});

describe('several adapters on disk', () => {
  it('saves default into the directory and others into subfolders; selectedAdapters picks', async () => {
    const { peft, x, backend } = await twoAdapterMlp();
    const path = join(dir, 'two');
    await peft.savePretrained(path);
    await access(join(path, 'adapter_config.json'));
    await access(join(path, 'other', 'adapter_model.safetensors'));
    const only = join(dir, 'only-other');
    await peft.savePretrained(only, { selectedAdapters: ['other'] });
    await expect(access(join(only, 'adapter_config.json'))).rejects.toThrow();
    await access(join(only, 'other', 'adapter_config.json'));

    const copy = new MLP(backend);
    copy.loadStateDict(
      new Map(
        [...peft.getBaseModel().stateDict()].filter(([k]) => !k.includes('lora_')).map(([k, v]) => [k.replace('.base_layer', ''), v]),
      ),
    );
    const loaded = await PeftModel.fromPretrained(copy, path);
    await loaded.loadAdapter(join(path, 'other'), 'other');
    expect(loaded.activeAdapter).toBe('default');
    expect(relativeError(await loaded.forward(x).float32(), await peft.forward(x).float32())).toBeLessThan(1e-6);
    loaded.setAdapter('other');
    peft.setAdapter('other');
    expect(relativeError(await loaded.forward(x).float32(), await peft.forward(x).float32())).toBeLessThan(1e-6);
    loaded.setAdapter(['default', 'other']);
    peft.setAdapter(['default', 'other']);
    expect(relativeError(await loaded.forward(x).float32(), await peft.forward(x).float32())).toBeLessThan(1e-6);
  });

  it('loadAdapter honours ephemeralGpuOffload (PEFT drops it): merges of that adapter run on the offload backend', async () => {
    const { peft } = await twoAdapterMlp();
    const path = join(dir, 'offload-load');
    await peft.savePretrained(path);
    const backend = counting(cpu());
    const model = new MLP(backend.backend);
    const offload = counting(cpu());
    const loaded = await PeftModel.fromPretrained(model, path);
    await loaded.loadAdapter(join(path, 'other'), 'other', { ephemeralGpuOffload: offload.backend });
    await loaded.mergeAdapter(['default']);
    expect(offload.calls).toHaveLength(0);
    await loaded.mergeAdapter(['other']);
    expect(offload.count('weightNorm')).toBe(1);
    expect(offload.backend.liveBuffers()).toBe(0);
  });
});

describe('fromPretrained({ backend })', () => {
  it('moves the model to that backend after validating the adapter, and not when the adapter is bad', async () => {
    const home = cpu();
    const target = cpu();
    const { peft, x } = await twoAdapterMlp(home);
    const path = join(dir, 'move');
    await peft.savePretrained(path, { selectedAdapters: ['default'] });
    const model = new MLP(home);
    model.loadStateDict(
      new Map(
        [...peft.getBaseModel().stateDict()]
          .filter(([k]) => !k.includes('lora_'))
          .map(([k, v]) => [k.replace('.base_layer', ''), noGrad(() => ops.mulScalar(v, 1))]),
      ),
      { strict: false },
    );
    await expect(PeftModel.fromPretrained(model, join(dir, 'missing'), { backend: target })).rejects.toThrow();
    expect(model.parameters().every((p) => p.backend === home)).toBe(true);
    const loaded = await PeftModel.fromPretrained(model, path, { backend: target });
    expect(loaded.parameters().every((p) => p.backend === target)).toBe(true);
    const xt = tensor(await x.float32(), [...x.shape], { backend: target });
    peft.setAdapter('default');
    expect(relativeError(await loaded.forward(xt).float32(), await peft.forward(x).float32())).toBeLessThan(1e-6);
  });
});
