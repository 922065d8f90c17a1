import { AdamW, backward, Embedding, Layer, Linear, noGrad, ops, Random, ReLU, type Tensor, tensor, tidy } from '@dorajs/core';
import { watchHandles } from '@dorajs/backend-conformance';
import { describe, expect, it } from 'vitest';
import { getPeftModel, LoraConfig, type PeftModel } from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { perturb } from './helpers/behaviour.js';

const VOCAB = 20;
const DIM = 16;
const HID = 24;
const OUT = 8;
const TOKENS = 6;

/** Embedding → Linear (bias) → ReLU → Linear: DoRA on all three (two fused linears, one embedding norm). */
class Net extends Layer {
  emb: Layer;
  lin1: Layer;
  act = new ReLU();
  lin2: Layer;

  constructor(backend: import('@dorajs/core').Backend) {
    super();
    this.emb = new Embedding(VOCAB, DIM, { backend });
    this.lin1 = new Linear(DIM, HID, { backend });
    this.lin2 = new Linear(HID, OUT, { backend, bias: false });
  }

  forward(ids: Tensor): Tensor {
    return this.lin2.forward(this.act.forward(this.lin1.forward(this.emb.forward(ids))));
  }
}

async function build() {
  let norms = 0;
  const backend = watchHandles(cpu(), {
    call(op) {
      if (op === 'weightNorm' || op === 'weightNormNarrow' || op === 'matmulWeightNorm') norms++;
    },
  });
  const net = new Net(backend);
  const init = new Random(11);
  noGrad(() => {
    for (const [, p] of net.namedParameters()) {
      const t = tensor(init.fillNormal(p.size, 0, 0.5), [...p.shape], { backend });
      p.assign(t);
      t.dispose();
    }
  });
  const config = new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ['emb', 'lin1', 'lin2'], useDora: true });
  const peft = await getPeftModel(net, config, 'default', { random: new Random(1) });
  perturb(peft, 3);
  peft.train();
  return { peft, backend, norms: () => norms };
}

const memos = (peft: PeftModel) =>
  peft
    .namedModules()
    .filter(([path]) => path.endsWith('lora_magnitude_vector.default'))
    .map(([, m]) => (m as unknown as { normMemo: import('@dorajs/core').NormMemo }).normMemo);

interface RunOptions {
  /** Clear every layer's memo before each forward (a forced recompute: the reference). */
  readonly recompute: boolean;
  /** Between the two micro-batches of step 1: an in-place edit of lin1's lora_A. */
  readonly editA?: boolean;
}

/** 2 optimizer steps × 2 micro-batches (gradient accumulation 2): losses, gradients, norms per step. */
async function run(options: RunOptions) {
  const { peft, backend, norms } = await build();
  const params = peft.parameters().filter((p) => p.requiresGrad);
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.01 });
  const data = new Random(5);
  const losses: number[] = [];
  const grads: Float32Array[] = [];
  const normsPerStep: number[] = [];
  for (let step = 0; step < 2; step++) {
    opt.zeroGrad();
    const before = norms();
    for (let micro = 0; micro < 2; micro++) {
      if (step === 1 && micro === 1 && options.editA) {
        const a = peft.namedParameters().find(([n]) => n.includes('lin1.lora_A.default'))![1];
        noGrad(() => {
          const t = ops.mulScalar(a, 1.5);
          a.assign(t);
          t.dispose();
        });
      }
      if (options.recompute) for (const m of memos(peft)) m.clear();
      const ids = tensor(
        Array.from({ length: TOKENS }, () => Math.floor(data.next() * VOCAB)),
        [TOKENS],
        { backend, dtype: 'int32' },
      );
      const r = tensor(data.fillNormal(TOKENS * OUT), [TOKENS, OUT], { backend });
      const out = peft.forward(ids);
      const loss = tidy(() => ops.mulScalar(ops.sum(ops.mul(out, r)), 1 / out.size));
      losses.push((await loss.float32())[0]!);
      backward(loss);
      for (const t of [ids, r, out, loss]) t.dispose();
    }
    normsPerStep.push(norms() - before);
    for (const p of params) grads.push(await p.grad!.float32());
    opt.step();
  }
  const out = { losses, grads, normsPerStep, memoSizes: memos(peft).map((m) => m.size), peft };
  return out;
}

describe('DoRA norm reuse across forwards', () => {
  it('2 steps × 2 accumulated micro-batches: losses and every gradient bit-identical to a forced recompute, 1 norm per projection per step', async () => {
    const reused = await run({ recompute: false });
    const forced = await run({ recompute: true });
    expect(reused.losses).toEqual(forced.losses);
    expect(reused.grads.length).toBe(forced.grads.length);
    reused.grads.forEach((g, i) => expect(g).toEqual(forced.grads[i]));
    expect(forced.normsPerStep).toEqual([6, 6]); // 3 projections × 2 micro-batches
    expect(reused.normsPerStep).toEqual([3, 3]); // 3 projections, once per optimizer step
    expect(reused.memoSizes).toEqual([DIM, HID, OUT]); // one [out] vector per DoRA layer
  });

  it('an in-place edit of A between micro-batches recomputes that layer`s norm', async () => {
    const reused = await run({ recompute: false, editA: true });
    const forced = await run({ recompute: true, editA: true });
    expect(reused.losses).toEqual(forced.losses);
    reused.grads.forEach((g, i) => expect(g).toEqual(forced.grads[i]));
    expect(reused.normsPerStep).toEqual([3, 4]);
  });

  it('eval(), an adapter switch and dispose() release the memo; a forward after eval recomputes', async () => {
    const { peft } = await run({ recompute: false });
    expect(memos(peft).every((m) => m.size > 0)).toBe(true);
    peft.eval();
    expect(memos(peft).every((m) => m.size === 0)).toBe(true);
    peft.train();
    const ids = tensor([1, 2, 3], [3], { backend: peft.parameters()[0]!.backend, dtype: 'int32' });
    peft.forward(ids).dispose();
    expect(memos(peft).every((m) => m.size > 0)).toBe(true);
    peft.setAdapter('default');
    expect(memos(peft).every((m) => m.size === 0)).toBe(true);
    peft.forward(ids).dispose();
    const held = memos(peft);
    expect(held.every((m) => m.size > 0)).toBe(true);
    peft.dispose();
    expect(held.every((m) => m.size === 0)).toBe(true);
    ids.dispose();
  });
});
