/**
 * Bad adapters: each is a typed error naming the culprit, raised before the model is touched — the model
 * (or an existing PeftModel) is left exactly as it was.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type HostTensor, type Module, Random, SafetensorsError, serializeSafetensors } from '@dorajs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterFileError,
  AdapterKeyError,
  AdapterShapeError,
  adapterFiles,
  getPeftModel,
  LoraConfig,
  PeftModel,
  TargetNotFoundError,
} from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { MLP } from './helpers/models.js';

let dir = '';
let good: { config: string; tensors: Map<string, HostTensor> };
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-bad-'));
  const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ r: 2, targetModules: ['lin1', 'lin2'], useDora: true }), 'default', {
    random: new Random(1),
  });
  perturb(peft, 2);
  good = await adapterFiles(peft, 'default');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function snapshot(m: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, p] of m.stateDict()) out.set(k, Float32Array.from(await p.float32()));
  return out;
}

async function expectUnchanged(m: Module, before: Map<string, Float32Array>): Promise<void> {
  const after = await snapshot(m);
  expect([...after.keys()]).toEqual([...before.keys()]);
  for (const [k, v] of before) expect(after.get(k), k).toEqual(v);
}

const withTensors = (edit: (t: Map<string, HostTensor>) => void) => {
  const t = new Map(good.tensors);
  edit(t);
  return { config: good.config, weights: serializeSafetensors(t, { format: 'pt' }), name: 'bad' };
};
const withConfig = (edit: (c: Record<string, unknown>) => void) => {
  const c = JSON.parse(good.config) as Record<string, unknown>;
  edit(c);
  return { config: JSON.stringify(c), weights: serializeSafetensors(good.tensors, { format: 'pt' }), name: 'bad' };
};

const P = 'base_model.model.';
const CASES: [string, () => Promise<Parameters<typeof PeftModel.fromPretrained>[1]>, new (...a: never[]) => Error, RegExp][] = [
  [
    'a missing directory',
    async () => join(dir, 'nowhere'),
    AdapterFileError,
    /nowhere\/adapter_config\.json: cannot read the adapter config \(ENOENT\)/,
  ],
  [
    'missing weights',
    async () => {
      const d = join(dir, 'no-weights');
      await mkdir(d, { recursive: true });
      await writeFile(join(d, 'adapter_config.json'), good.config);
      return d;
    },
    AdapterFileError,
    /no-weights\/adapter_model\.safetensors: cannot read the adapter weights/,
  ],
  [
    'invalid JSON',
    async () => {
      const d = join(dir, 'bad-json');
      await mkdir(d, { recursive: true });
      await writeFile(join(d, 'adapter_config.json'), '{"peft_type": "LORA",');
      await writeFile(join(d, 'adapter_model.safetensors'), serializeSafetensors(good.tensors));
      return d;
    },
    AdapterFileError,
    /bad-json\/adapter_config\.json: not valid JSON/,
  ],
  ['an unknown peft_type', async () => withConfig((c) => (c['peft_type'] = 'LOHA')), AdapterFileError, /peft_type 'LOHA' is not supported/],
  [
    'a target that matches nothing',
    async () => withConfig((c) => (c['target_modules'] = ['q_proj'])),
    TargetNotFoundError,
    /\['q_proj'\] matched no/,
  ],
  [
    'a missing lora_B',
    async () => withTensors((t) => t.delete(`${P}lin2.lora_B.weight`)),
    AdapterKeyError,
    /tensor 'base_model\.model\.lin2\.lora_B\.weight' for module 'lin2' is missing/,
  ],
  [
    'a missing magnitude',
    async () => withTensors((t) => t.delete(`${P}lin1.lora_magnitude_vector`)),
    AdapterKeyError,
    /lin1\.lora_magnitude_vector' for module 'lin1' is missing/,
  ],
  [
    'a lora_A of the wrong shape',
    async () => withTensors((t) => t.set(`${P}lin1.lora_A.weight`, { dtype: 'F32', shape: [2, 15], data: new Float32Array(30) })),
    AdapterShapeError,
    /'base_model\.model\.lin1\.lora_A\.weight' has shape \[2, 15\] but module 'lin1' needs \[2, 16\]/,
  ],
  [
    'a rank that disagrees with the config',
    async () => withConfig((c) => (c['r'] = 3)),
    AdapterShapeError,
    /lora_A\.weight' has shape \[2, 16\] but module 'lin1' needs \[3, 16\]/,
  ],
  [
    'an integer adapter tensor',
    async () => withTensors((t) => t.set(`${P}lin2.lora_A.weight`, { dtype: 'I32', shape: [2, 32], data: new Int32Array(64) })),
    AdapterFileError,
    /has dtype I32; adapter weights must be F32, F16 or BF16/,
  ],
  [
    'a truncated safetensors file',
    async () => ({ config: good.config, weights: serializeSafetensors(good.tensors).subarray(0, 100), name: 'cut' }),
    SafetensorsError,
    /cut\/adapter_model\.safetensors/,
  ],
];

describe.each(CASES)('loading %s', (_, make, type, message) => {
  it('fromPretrained throws a typed error and leaves the model as it was', async () => {
    const model = new MLP(cpu());
    const before = await snapshot(model);
    const err = await PeftModel.fromPretrained(model, await make()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    await expectUnchanged(model, before);
  });

  it('loadAdapter onto an existing PeftModel throws and changes nothing', async () => {
    const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ r: 2, targetModules: ['lin1'], useDora: true }));
    const before = await snapshot(peft);
    const err = await peft.loadAdapter(await make(), 'second').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(type);
    expect([...peft.peftConfig.keys()]).toEqual(['default']);
    await expectUnchanged(peft, before);
  });
});

describe('loading a good adapter', () => {
  it('loads from memory and from disk to the same model', async () => {
    const d = join(dir, 'good');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'adapter_config.json'), good.config);
    await writeFile(join(d, 'adapter_model.safetensors'), serializeSafetensors(good.tensors, { format: 'pt' }));
    const backend = cpu();
    const base = new MLP(backend);
    const copy = new MLP(backend);
    copy.loadStateDict(base.stateDict(), { strict: true });
    const fromDisk = await PeftModel.fromPretrained(base, d);
    const fromMemory = await PeftModel.fromPretrained(copy, { config: good.config, weights: serializeSafetensors(good.tensors) });
    const a = fromDisk.stateDict();
    for (const [k, v] of fromMemory.stateDict()) {
      if (k.includes('lora_')) expect(await v.float32(), k).toEqual(await a.get(k)!.float32());
    }
    expect(fromDisk.training).toBe(false);
    expect(fromDisk.parameters().some((p) => p.requiresGrad)).toBe(false);
  });

  it('refuses an adapter name that already exists', async () => {
    const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ targetModules: ['lin1'] }));
    await expect(peft.loadAdapter({ config: good.config, weights: serializeSafetensors(good.tensors) }, 'default')).rejects.toThrow(
      "an adapter named 'default' already exists",
    );
  });
});

describe('adapter names', () => {
  it.each(['_tmp', 'a.b'])("'%s' is refused with a typed error before anything is created", async (name) => {
    const { AdapterNameError } = await import('../src/index.js');
    const model = new MLP(cpu());
    const keys = [...model.stateDict().keys()];
    await expect(getPeftModel(model, new LoraConfig({ r: 2, targetModules: ['lin1'] }), name)).rejects.toThrow(AdapterNameError);
    expect([...model.stateDict().keys()]).toEqual(keys);
    const peft = await getPeftModel(new MLP(cpu()), new LoraConfig({ r: 2, targetModules: ['lin1'] }));
    await expect(peft.addAdapter(name, new LoraConfig({ r: 2, targetModules: ['lin1'] }))).rejects.toThrow(AdapterNameError);
  });
});
