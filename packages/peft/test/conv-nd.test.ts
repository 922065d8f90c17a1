/**
 * DoRA on nn.Conv1d and nn.Conv3d (PEFT's DoraConv1dVariant / DoraConv3dVariant): merge/unmerge and grouped
 * convs. Their parity with the float64 numpy port of PEFT's code (fixtures/peft/make_conv_nd.py) runs with
 * the other fixture cases in fixture-layers.test.ts.
 */
import { type Backend, type Layer, Random, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { getPeftModel, LoraConfig, type LoraConvLayer } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { ConvNet1d, ConvNet3d } from './helpers/models.js';
import { relativeError } from '@dorajs/backend-conformance';

const kinds = [
  { name: 'Conv1d', build: (b: Backend, groups: boolean) => new ConvNet1d(b, groups ? { groups1: 3 } : {}), x: [2, 9, 9] },
  { name: 'Conv3d', build: (b: Backend, groups: boolean) => new ConvNet3d(b, groups ? { groups2: 2 } : {}), x: [2, 2, 3, 5, 4] },
] as const;

describe.each(kinds)('$name', (k) => {
  const input = (b: Backend, groups: boolean) => {
    const shape = k.name === 'Conv1d' && !groups ? [2, 3, 9] : [...k.x];
    return tensor(new Random(5).fillNormal(shape.reduce((a, v) => a * v, 1)), shape, { backend: b });
  };

  it.each([true, false])(
    'magnitude shaped [1, out, 1…] as PEFT saves it; merge ≈ unmerged; unmerge restores W (useDora %s)',
    async (useDora) => {
      const backend = cpu();
      const peft = await getPeftModel(k.build(backend, false), new LoraConfig({ r: 2, targetModules: ['c1', 'c2'], useDora }), 'default', {
        random: new Random(1),
      });
      const c1 = peft.getBaseModel().getSubmodule('c1') as LoraConvLayer<never>;
      if (useDora) {
        const ones = k.name === 'Conv1d' ? [1] : [1, 1, 1];
        expect(c1.lora_magnitude_vector.get('default')!.weight.shape).toEqual([1, 4 + (k.name === 'Conv1d' ? 2 : 0), ...ones]);
      }
      perturb(peft, 2);
      peft.eval();
      const x = input(backend, false);
      const w0 = await c1.weight.float32();
      const unmerged = await peft.forward(x).float32();
      await peft.mergeAdapter();
      expect(relativeError(await peft.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
      expect(relativeError(await c1.weight.float32(), w0)).toBeGreaterThan(1e-3);
      await peft.unmergeAdapter();
      expect(relativeError(await c1.weight.float32(), w0)).toBeLessThan(1e-5);
      expect(relativeError(await peft.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
    },
  );

  it('grouped base: merging makes the dense conv equal to the unmerged forward; unmerge restores the grouped kernel', async () => {
    const backend = cpu();
    const peft = await getPeftModel(
      k.build(backend, true),
      new LoraConfig({ r: 6, targetModules: ['c1', 'c2'], useDora: true }),
      'default',
      {
        random: new Random(3),
      },
    );
    perturb(peft, 4);
    peft.eval();
    const x = input(backend, true);
    const grouped = peft.getBaseModel().getSubmodule(k.name === 'Conv1d' ? 'c1' : 'c2') as LoraConvLayer<never>;
    const w0 = await grouped.weight.float32();
    const unmerged = await peft.forward(x).float32();
    await peft.mergeAdapter();
    expect(relativeError(await peft.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
    await peft.unmergeAdapter();
    expect(relativeError(await grouped.weight.float32(), w0)).toBeLessThan(1e-5);
    const merged = (await peft.mergeAndUnload()) as Layer;
    expect(relativeError(await merged.forward(x).float32(), unmerged)).toBeLessThan(1e-5);
  });
});
