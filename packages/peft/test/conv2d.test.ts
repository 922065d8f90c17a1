/** Conv2d beyond PEFT: dilation (lora_A takes the base dilation) and groups (true grouped delta; merge into a dense conv). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Layer, Random, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import {
  collectWarnings,
  collectWarningsAsync,
  getPeftModel,
  LoraConfig,
  LoraConfigError,
  type LoraConv2d,
  PeftModel,
} from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { add, mat, matmul, rowNorms, scale } from './helpers/host-math.js';
import { ConvNet } from './helpers/models.js';
import { relativeError } from '@dorajs/backend-conformance';

const input = (backend: import('@dorajs/core').Backend) => tensor(new Random(3).fillNormal(2 * 3 * 7 * 7), [2, 3, 7, 7], { backend });

describe('Conv2d with dilation ≠ 1', () => {
  it.each([true, false])('useDora %s: merged = unmerged because lora_A uses the base dilation', async (useDora) => {
    const backend = cpu();
    const { result: peft, warnings } = await collectWarningsAsync(() =>
      getPeftModel(
        new ConvNet(backend, { dilation1: 2, padding1: 2 }),
        new LoraConfig({ r: 2, targetModules: ['c1', 'c2'], useDora }),
        'default',
        { random: new Random(1) },
      ),
    );
    expect(warnings.map((w) => w.code)).toEqual(['conv-dilation']);
    perturb(peft, 2);
    peft.eval();
    const x = input(backend);
    const unmerged = await peft.forward(x).float32();
    const merged = (await peft.mergeAndUnload()) as Layer;
    expect(relativeError(await merged.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
  });

  it('warns when an adapter (e.g. from PEFT, which ran lora_A undilated) is loaded onto a dilated conv', async () => {
    const backend = cpu();
    const dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-conv-'));
    try {
      const plainNet = new ConvNet(backend);
      const peft = await getPeftModel(plainNet, new LoraConfig({ r: 2, targetModules: ['c1'], useDora: true }));
      await peft.savePretrained(dir);
      const { warnings } = await collectWarningsAsync(() =>
        PeftModel.fromPretrained(new ConvNet(backend, { dilation1: 2, padding1: 2 }), dir),
      );
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toMatch(/PEFT ran this adapter's lora_A with dilation 1/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Conv2d with groups > 1', () => {
  const grouped = (backend: import('@dorajs/core').Backend) => new ConvNet(backend, { channels: [3, 6, 4], groups2: 2 });

  it('the DoRA norm is the norm of the true grouped delta', async () => {
    const backend = cpu();
    const { result: peft, warnings } = await collectWarningsAsync(() =>
      getPeftModel(
        grouped(backend),
        new LoraConfig({ r: 4, loraAlpha: 2, targetModules: ['c2'], useDora: true, initLoraWeights: false }),
        'default',
        { random: new Random(6) },
      ),
    );
    expect(warnings.map((w) => w.code)).toEqual(['conv-groups']);
    const layer = peft.getBaseModel().getSubmodule('c2') as LoraConv2d;
    const { a, b } = layer.adapterWeights('default')!;
    expect(b.shape).toEqual([4, 2, 1, 1]);
    // Dense [out, in] view: W block-diagonal over the 2 groups of 3 inputs, B block-diagonal over the 2 groups of 2 ranks.
    const w = await layer.weight.float32();
    const bv = await b.float32();
    const wFull = new Float64Array(4 * 6);
    const bFull = new Float64Array(4 * 4);
    for (let o = 0; o < 4; o++) {
      const g = Math.floor(o / 2);
      for (let i = 0; i < 3; i++) wFull[o * 6 + g * 3 + i] = w[o * 3 + i]!;
      for (let j = 0; j < 2; j++) bFull[o * 4 + g * 2 + j] = bv[o * 2 + j]!;
    }
    const delta = scale(matmul(mat(bFull, 4, 4), mat(await a.float32(), 4, 6)), 0.5);
    const expected = rowNorms(add(mat(wFull, 4, 6), delta));
    const m = await layer.lora_magnitude_vector.get('default')!.weight.float32();
    expect(relativeError(m, expected)).toBeLessThan(1e-6);
  });

  it.each([true, false])(
    'useDora %s: merging makes the dense conv the grouped base + true delta equal; unmerge restores the grouped base',
    async (useDora) => {
      const backend = cpu();
      const { result: peft } = await collectWarningsAsync(() =>
        getPeftModel(grouped(backend), new LoraConfig({ r: 2, targetModules: ['c1', 'c2'], useDora })),
      );
      perturb(peft, 1);
      peft.eval();
      const x = input(backend);
      const unmerged = await peft.forward(x).float32();
      const layer = peft.getBaseModel().getSubmodule('c2') as LoraConv2d;
      const groupedWeight = await layer.weight.float32();
      const [out, inPerGroup, kh, kw] = layer.weight.shape as [number, number, number, number];
      await peft.mergeAdapter();
      expect(layer.merged).toBe(true);
      expect(layer.base_layer.params.groups).toBe(1);
      expect(layer.weight.shape).toEqual([out, inPerGroup * 2, kh, kw]);
      expect(relativeError(await peft.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
      await peft.unmergeAdapter();
      expect(layer.base_layer.params.groups).toBe(2);
      expect(layer.weight.shape).toEqual([out, inPerGroup, kh, kw]);
      expect(relativeError(await layer.weight.float32(), groupedWeight)).toBeLessThan(1e-5);
      expect(relativeError(await peft.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
      const merged = (await peft.mergeAndUnload({ safeMerge: true })) as Layer;
      expect(relativeError(await merged.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
    },
  );

  it('a rank not divisible by groups is refused (as PEFT)', async () => {
    const backend = cpu();
    const model = grouped(backend);
    const err = await collectWarnings(() => getPeftModel(model, new LoraConfig({ r: 3, targetModules: ['c2'] }))).result.catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LoraConfigError);
    expect((err as Error).message).toContain("Targeting a Conv2d ('c2') with groups=2 and rank 3");
  });
});
