import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW, backward, ops, tensor, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { cpu } from './helpers/backend.js';
import { fixturePath, readHost } from './helpers/fixtures.js';
import { MLP } from './helpers/models.js';
import { checkMerged, expectClose, loadCase, type ParityCase } from './helpers/parity.js';

const mlp: ParityCase = { name: 'mlp_adamw', build: (b) => new MLP(b, [12, 20, 6], [true, false]) };

describe('PEFT fixture mlp_adamw (from files on disk)', () => {
  it('3 AdamW steps (lr 1e-2, wd 0.01, loss sum(out·R)/numel) reach trained.*, out.trained, the merge and adapter_trained/', async () => {
    const backend = cpu();
    const { peft, fx } = await loadCase(mlp, backend);
    const x = fx.input(backend);
    const params = peft.parameters().filter((p) => p.requiresGrad);
    expect(params.length).toBe(6);
    const opt = new AdamW(params, { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
    const losses: number[] = [];
    peft.train();
    for (let step = 0; step < 3; step++) {
      opt.zeroGrad();
      const out = peft.forward(x);
      const R = tensor(fx.float('grad.R'), [...out.shape], { backend });
      const loss = tidy(() => ops.mulScalar(ops.sum(ops.mul(out, R)), 1 / out.size));
      losses.push((await loss.float32())[0]!);
      backward(loss);
      opt.step();
      for (const t of [out, R, loss]) t.dispose();
    }
    const meta = JSON.parse(await readFile(fixturePath('mlp_adamw', 'meta.json'), 'utf8')) as { adamw: { losses: number[] } };
    losses.forEach((l, i) => expect(Math.abs(l - meta.adamw.losses[i]!)).toBeLessThan(1e-6 * Math.max(1, Math.abs(meta.adamw.losses[i]!))));

    const state = peft.stateDict();
    for (const key of fx.tensors.keys()) {
      if (!key.startsWith('trained.')) continue;
      await expectClose(state.get(key.slice('trained.'.length))!, fx.float(key), key);
    }
    peft.eval();
    const out = peft.forward(x);
    await expectClose(out, fx.float('out.trained'), 'out.trained');

    // The trained adapter saved by dorajs equals PEFT's adapter_trained/ (same keys, shapes, dtypes, values).
    const dir = await mkdtemp(join(tmpdir(), 'dorajs-peft-'));
    try {
      await peft.savePretrained(dir);
      const ours = await readHost(join(dir, 'adapter_model.safetensors'));
      const theirs = await readHost(fixturePath('mlp_adamw', 'adapter_trained', 'adapter_model.safetensors'));
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [k, v] of theirs) {
        expect(ours.get(k)!.dtype).toBe(v.dtype);
        expect(ours.get(k)!.shape).toEqual(v.shape);
        await expectClose(tensor(ours.get(k)!.data as Float32Array, [...v.shape], { backend }), v.data as Float32Array, `saved ${k}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // The fixture's merge is of the trained adapter.
    await checkMerged(peft, fx, backend, 'mlp_adamw');
  });
});
