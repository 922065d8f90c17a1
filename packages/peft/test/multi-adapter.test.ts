/**
 * Several adapters on one layer: PEFT's eval forward order (a later DoRA adapter rescales everything
 * accumulated so far), merges with every norm from the unmerged base (merged = unmerged, PEFT #3608),
 * mixed-batch inference for DoRA, add_weighted_adapter, and the training-with-dropout form.
 */
import { Layer, Linear, noGrad, Random, type Tensor, tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import {
  getPeftModel,
  LoraConfig,
  type LoraLinear,
  MergeError,
  type PeftModel,
  UnsupportedAdapterOperationError,
  AdapterNameError,
  LoraConfigError,
} from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { KINDS, perturb } from './helpers/behaviour.js';
import { add, mat, matmul, rowNorms, scale, scaleCols, transpose } from './helpers/host-math.js';
import { relativeError } from '@dorajs/backend-conformance';

class Net extends Layer {
  lin: Layer;
  constructor(backend: import('@dorajs/core').Backend) {
    super();
    this.lin = new Linear(6, 5, { backend });
  }
  forward(x: Tensor): Tensor {
    return this.lin.forward(x);
  }
}

async function twoAdapters(doraA = true, doraB = true) {
  const backend = cpu();
  const peft = await getPeftModel(new Net(backend), new LoraConfig({ r: 2, loraAlpha: 3, targetModules: ['lin'], useDora: doraA }), 'a', {
    random: new Random(1),
  });
  await peft.addAdapter('b', new LoraConfig({ r: 3, loraAlpha: 5, targetModules: ['lin'], useDora: doraB }));
  perturb(peft, 9);
  peft.eval();
  const x = tensor(new Random(4).fillNormal(4 * 6), [4, 6], { backend });
  return { peft, x, layer: peft.getBaseModel().getSubmodule('lin') as LoraLinear };
}

/** The host reference for one layer's adapter: ΔW = s·B·A [out, in], and g = m / ‖W + ΔW‖ (or null). */
async function adapterRef(layer: LoraLinear, name: string) {
  const s = layer.settings(name)!;
  const { a, b } = layer.adapterWeights(name)!;
  const A = mat(await a.float32(), a.shape[0]!, a.shape[1]!);
  const B = mat(await b.float32(), b.shape[0]!, b.shape[1]!);
  const W = mat(await layer.weight.float32(), layer.weight.shape[0]!, layer.weight.shape[1]!);
  const delta = scale(matmul(B, A), s.scaling);
  const m = layer.lora_magnitude_vector.get(name);
  const g = m ? (await m.weight.float32()).map((v, i) => v / rowNorms(add(W, delta)).at(i)!) : null;
  return { W, delta, g };
}

describe('several adapters on one layer', () => {
  it('two active DoRA adapters: y = b + g₂ ⊙ [g₁ ⊙ x(W + s₁ΔW₁)ᵀ + s₂·xΔW₂ᵀ], norms from the unmerged base', async () => {
    const { peft, x, layer } = await twoAdapters();
    peft.setAdapter(['a', 'b']);
    const ra = await adapterRef(layer, 'a');
    const rb = await adapterRef(layer, 'b');
    const X = mat(await x.float32(), 4, 6);
    const inner = add(scaleCols(matmul(X, transpose(add(ra.W, ra.delta))), ra.g!), matmul(X, transpose(rb.delta)));
    const bias = await layer.bias!.float32();
    const expected = scaleCols(inner, rb.g!).data.map((v, i) => v + bias[i % 5]!);
    expect(relativeError(await peft.forward(x).float32(), expected)).toBeLessThan(1e-5);
    // Order matters: b then a is a different model.
    peft.setAdapter(['b', 'a']);
    expect(relativeError(await peft.forward(x).float32(), expected)).toBeGreaterThan(1e-3);
  });

  it.each([
    ['DoRA + DoRA', true, true],
    ['LoRA + DoRA', false, true],
    ['DoRA + LoRA', true, false],
  ])('%s: merging both (at once or one by one) equals the unmerged forward', async (_, da, db) => {
    for (const incremental of [false, true]) {
      const { peft, x, layer } = await twoAdapters(da, db);
      peft.setAdapter(['a', 'b']);
      const unmerged = await peft.forward(x).float32();
      const w0 = await layer.weight.float32();
      if (incremental) {
        await peft.mergeAdapter(['a']);
        await peft.mergeAdapter(['b']);
      } else {
        await peft.mergeAdapter();
      }
      expect(layer.mergedAdapters).toEqual(['a', 'b']);
      expect(relativeError(await peft.forward(x).float32(), unmerged), `incremental ${incremental}`).toBeLessThan(1e-5);
      await peft.unmergeAdapter();
      expect(relativeError(await layer.weight.float32(), w0)).toBeLessThan(1e-5);
    }
  });

  it('PEFT ≤ 0.20 took the second norm from the merged weight: that model differs (the bug this avoids)', async () => {
    const { peft, x, layer } = await twoAdapters();
    peft.setAdapter(['a', 'b']);
    const unmerged = await peft.forward(x).float32();
    const ra = await adapterRef(layer, 'a');
    const rb = await adapterRef(layer, 'b');
    const w1 = scaleCols(transpose(add(ra.W, ra.delta)), ra.g!); // [in, out] columns scaled = rows of W'
    const W1 = transpose(w1);
    const mB = await layer.lora_magnitude_vector.get('b')!.weight.float32();
    const nBuggy = rowNorms(add(W1, rb.delta));
    const W2 = transpose(
      scaleCols(
        transpose(add(W1, rb.delta)),
        mB.map((m, i) => m / nBuggy[i]!),
      ),
    );
    const bias = await layer.bias!.float32();
    const buggy = matmul(mat(await x.float32(), 4, 6), transpose(W2)).data.map((v, i) => v + bias[i % 5]!);
    expect(relativeError(buggy, unmerged)).toBeGreaterThan(1e-3);
  });
});

describe('mixed-batch inference (adapterNames per sample)', () => {
  it.each(KINDS.map((k) => [k.name, k] as const))('%s with DoRA: each sample equals its single-adapter output', async (_, kind) => {
    const backend = cpu();
    const peft = await getPeftModel(kind.build(backend), new LoraConfig({ r: 2, targetModules: [...kind.targets], useDora: true }), 'a', {
      random: new Random(2),
    });
    await peft.addAdapter('b', new LoraConfig({ r: 4, loraAlpha: 2, targetModules: [kind.targets[0]!], useDora: true }));
    perturb(peft, 21);
    peft.eval();
    const x = kind.input(backend, new Random(8));
    const n = x.shape[0]!;
    const names = ['b', 'a', '__base__', 'b'].slice(0, n);
    while (names.length < n) names.push('a');
    const mixed = await peft.forward(x, { adapterNames: names }).float32();
    const per = n === 0 ? 0 : mixed.length / n;
    const single = async (name: string) =>
      name === '__base__' ? peft.disableAdapter(() => peft.forward(x).float32()) : (peft.setAdapter(name), peft.forward(x).float32());
    const outputs: Record<string, Float32Array> = { a: await single('a'), b: await single('b'), __base__: await single('__base__') };
    names.forEach((name, i) => {
      const row = (t: Float32Array) => t.subarray(i * per, (i + 1) * per);
      expect(relativeError(row(mixed), row(outputs[name]!)), `sample ${i} (${name})`).toBeLessThanOrEqual(1e-6);
    });
  });

  it('refuses training mode, unknown adapters, merged adapters and a wrong count', async () => {
    const { peft, x } = await twoAdapters();
    expect(() => peft.forward(x, { adapterNames: ['a', 'c', 'a', 'a'] })).toThrow(AdapterNameError);
    expect(() => peft.forward(x, { adapterNames: ['a', 'b'] })).toThrow(/2 adapter names for a batch of 4/);
    peft.train();
    expect(() => peft.forward(x, { adapterNames: ['a', 'a', 'a', 'a'] })).toThrow(LoraConfigError);
    peft.eval();
    await peft.mergeAdapter();
    expect(() => peft.forward(x, { adapterNames: ['a', 'a', 'a', 'a'] })).toThrow(MergeError);
  });
});

describe('addWeightedAdapter', () => {
  it('refuses DoRA adapters with a typed error (PEFT #3761)', async () => {
    const { peft } = await twoAdapters(true, false);
    await expect(peft.addWeightedAdapter(['a', 'b'], [0.5, 0.5], 'mix')).rejects.toThrow(UnsupportedAdapterOperationError);
    await expect(peft.addWeightedAdapter(['a', 'b'], [0.5, 0.5], 'mix')).rejects.toThrow(/'a'.*#3761/);
    expect(peft.peftConfig.has('mix')).toBe(false);
  });

  it("'cat' combines plain LoRA adapters exactly: ΔW = w₁·ΔW₁ + w₂·ΔW₂", async () => {
    const { peft, x } = await twoAdapters(false, false);
    const base = await peft.disableAdapter(() => peft.forward(x).float32());
    const ya = await peft.forward(x).float32();
    peft.setAdapter('b');
    const yb = await peft.forward(x).float32();
    await peft.addWeightedAdapter(['a', 'b'], [0.7, -1.5], 'mix', 'cat');
    peft.setAdapter('mix');
    expect(peft.peftConfig.get('mix')!.r).toBe(5);
    const expected = base.map((v, i) => v + 0.7 * (ya[i]! - v) - 1.5 * (yb[i]! - v));
    expect(relativeError(await peft.forward(x).float32(), expected)).toBeLessThan(1e-5);
    await expect(peft.addWeightedAdapter(['a', 'b'], [1, 1], 'lin2', 'linear')).rejects.toThrow('same r value');
  });
});

describe('training with dropout (PEFT recompute form)', () => {
  it.each([true, false])('useDora %s: y = b + xWᵀ + (g−1)⊙x̃Wᵀ + g⊙s·B(A(x̃)) with the dropped input x̃', async (useDora) => {
    const backend = cpu();
    const peft: PeftModel = await getPeftModel(
      new Net(backend),
      new LoraConfig({ r: 2, loraAlpha: 3, loraDropout: 0.5, targetModules: ['lin'], useDora }),
      'default',
      { random: new Random(5) },
    );
    perturb(peft, 6);
    peft.train();
    const layer = peft.getBaseModel().getSubmodule('lin') as LoraLinear;
    const maskValues = Float32Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? 0 : 2));
    layer.lora_dropout.get('default')!._nextMask = tensor(maskValues, [4, 6], { backend });
    const x = tensor(new Random(4).fillNormal(24), [4, 6], { backend });
    const y = await noGrad(() => peft.forward(x)).float32();
    const r = await adapterRef(layer, 'default');
    const X = mat(await x.float32(), 4, 6);
    const Xd = mat(
      (await x.float32()).map((v, i) => v * maskValues[i]!),
      4,
      6,
    );
    const g = r.g ?? new Float64Array(5).fill(1);
    const base = matmul(X, transpose(r.W));
    const corr = scaleCols(
      matmul(Xd, transpose(r.W)),
      g.map((v) => v - 1),
    );
    const lora = scaleCols(matmul(Xd, transpose(r.delta)), g);
    const bias = await layer.bias!.float32();
    const expected = add(add(base, corr), lora).data.map((v, i) => v + bias[i % 5]!);
    expect(relativeError(y, expected)).toBeLessThan(1e-5);
    // Eval (or dropout 0) reuses the base result instead: a different number for the same weights.
    peft.eval();
    expect(relativeError(await peft.forward(x).float32(), expected)).toBeGreaterThan(1e-3);
  });
});
