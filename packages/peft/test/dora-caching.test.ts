import { Linear, noGrad, ops, Random, tensor, tidy } from '@dorajs/core';
import { afterEach, describe, expect, it } from 'vitest';
import { DoraCaching, getPeftModel, LoraConfig, type LoraLinear } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';
import { counting } from './helpers/counting-backend.js';
import { relativeError } from '@dorajs/backend-conformance';

const IN = 64;
const OUT = 48;

/** Linear(64→48) as the only layer, DoRA on it; its path in the wrapper model is `lin`. */
async function model(hideFused = false) {
  const c = counting(cpu(), { hideFused });
  const { Layer } = await import('@dorajs/core');
  class Net extends Layer {
    lin: import('@dorajs/core').Layer = new Linear(IN, OUT, { backend: c.backend });
    forward(x: import('@dorajs/core').Tensor) {
      return this.lin.forward(x);
    }
  }
  const peft = await getPeftModel(new Net(), new LoraConfig({ r: 4, targetModules: ['lin'], useDora: true }), 'default', {
    random: new Random(1),
  });
  perturb(peft, 3);
  await peft.addAdapter('other', new LoraConfig({ r: 2, targetModules: ['lin'], useDora: true }));
  perturb(peft, 4);
  peft.eval();
  const x = tensor(new Random(2).fillNormal(2 * IN), [2, IN], { backend: c.backend });
  const layer = peft.getBaseModel().getSubmodule('lin') as LoraLinear;
  return { c, peft, x, layer };
}

afterEach(() => DoraCaching.enable(false));

describe('DoRA caching', () => {
  it('caches only g (out floats per adapter) in eval mode, and a cached forward allocates no out×in buffer', async () => {
    const { c, peft, x, layer } = await model(true);
    const mag = layer.lora_magnitude_vector.get('default')!;
    expect(mag.hasCache).toBe(false);
    const plain = noGrad(() => peft.forward(x));
    // Without the fused kernel the uncached norm materialises B·A: the measurement can see an out×in buffer.
    c.reset();
    noGrad(() => peft.forward(x)).dispose();
    expect(c.largest()).toBeGreaterThanOrEqual(IN * OUT);
    DoraCaching.scope(() => noGrad(() => peft.forward(x))).dispose();
    expect(mag.hasCache).toBe(true);
    noGrad(() => peft.forward(x)).dispose();
    expect(mag.hasCache).toBe(false); // as PEFT: a forward with caching off empties the layer's cache
    DoraCaching.enable(true);
    const first = noGrad(() => peft.forward(x));
    expect(mag.hasCache).toBe(true);
    expect(mag.cachedElements).toBe(2 * OUT);
    c.reset();
    const cached = noGrad(() => peft.forward(x));
    expect(c.largest()).toBeLessThan(IN * OUT);
    expect(c.largest()).toBeLessThanOrEqual(2 * OUT);
    expect(relativeError(await cached.float32(), await plain.float32())).toBe(0);
    expect(relativeError(await first.float32(), await plain.float32())).toBe(0);
    DoraCaching.enable(false);
    noGrad(() => peft.forward(x)).dispose();
    expect(mag.hasCache).toBe(false);
  });

  it("a cached one-token forward is LoRA's kernels with one fused compose: no norm, no second pass over W, no read-back", async () => {
    // Decode (T = 1, eval, caching on) must not pay for DoRA beyond the compose: LoRA's three matmuls
    // (base, x·Aᵀ, ·Bᵀ) and one doraCompose, where LoRA has its scale, add and bias kernels.
    const { c, peft, layer } = await model();
    const x1 = tensor(new Random(5).fillNormal(IN), [1, IN], { backend: c.backend });
    DoraCaching.enable(true);
    const reference = noGrad(() => peft.forward(x1)); // fills the cache
    c.reset();
    const y = noGrad(() => peft.forward(x1));
    const kernels = c.every.filter((op) => op !== 'release');
    expect(kernels.sort()).toEqual(['doraCompose', 'matmul', 'matmul', 'matmul']);
    // The base matmul is the only call that reads W: one [1, OUT] output from W, the branch's are [1, r], [1, OUT].
    expect(c.calls.filter((k) => k.op === 'matmul').map((k) => k.elements)).toEqual([4, OUT, OUT]);
    expect(layer.lora_magnitude_vector.get('default')!.hasCache).toBe(true);
    expect(relativeError(await y.float32(), await reference.float32())).toBe(0);
  });

  it('never caches in train mode; train() clears the cache', async () => {
    const { peft, x, layer } = await model();
    const mag = layer.lora_magnitude_vector.get('default')!;
    DoraCaching.enable(true);
    peft.train();
    tidy(() => peft.forward(x));
    expect(mag.hasCache).toBe(false);
    peft.eval();
    noGrad(() => peft.forward(x));
    expect(mag.hasCache).toBe(true);
    peft.train();
    expect(mag.hasCache).toBe(false);
  });

  it('an adapter switch, a merge, or a parameter change invalidates the cache', async () => {
    const { c, peft, x, layer } = await model();
    const run = () => noGrad(() => peft.forward(x)).float32();
    const reference = async () => {
      DoraCaching.enable(false);
      const y = await run();
      DoraCaching.enable(true);
      return y;
    };
    DoraCaching.enable(true);
    await run();
    const mag = layer.lora_magnitude_vector.get('default')!;
    peft.setAdapter('other');
    expect(mag.hasCache).toBe(false);
    expect(relativeError(await run(), await reference())).toBe(0);
    peft.setAdapter('default');
    await run();
    await peft.mergeAdapter();
    expect(mag.hasCache).toBe(false);
    await peft.unmergeAdapter();
    await run();
    // Changing B (or W, A, m) in eval mode: PEFT would serve a stale norm; dorajs sees the new version.
    const b = layer.lora_B.get('default')!.weight;
    const nb = noGrad(() => ops.mulScalar(b, 2));
    b.assign(nb);
    c.reset();
    const y = await run();
    expect(c.count('weightNorm', 'matmul')).toBeGreaterThan(0);
    expect(relativeError(y, await reference())).toBe(0);
    const w = layer.weight;
    const nw = noGrad(() => ops.mulScalar(w, 0.5));
    w.assign(nw);
    expect(relativeError(await run(), await reference())).toBe(0);
  });

  it('the magnitude still receives its gradient through a cached forward with grad enabled', async () => {
    const { peft, x, layer } = await model();
    const m = layer.lora_magnitude_vector.get('default')!.weight;
    const { backward } = await import('@dorajs/core');
    DoraCaching.enable(true);
    noGrad(() => peft.forward(x)); // fills the cache
    const y = peft.forward(x);
    backward(ops.sum(y));
    const cachedGrad = await m.grad!.float32();
    m.grad = null;
    DoraCaching.enable(false);
    backward(ops.sum(peft.forward(x)));
    expect(relativeError(cachedGrad, await m.grad!.float32())).toBe(0);
  });
});
