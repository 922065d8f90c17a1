/** Small models of each targetable kind, their inputs, and a way to make adapters non-trivial. */
import { type Backend, type Layer, noGrad, ops, Random, type Tensor, tensor } from '@dorajs/core';
import type { PeftModel } from '../../src/index.js';
import { Conv1DNet, ConvNet, EmbHead, MLP } from './models.js';

export interface Kind {
  readonly name: string;
  readonly targets: readonly string[];
  build(backend: Backend): Layer;
  input(backend: Backend, random: Random): Tensor;
}

export const KINDS: readonly Kind[] = [
  {
    name: 'MLP',
    targets: ['lin1', 'lin2'],
    build: (b) => new MLP(b),
    input: (b, r) => tensor(r.fillNormal(4 * 16), [4, 16], { backend: b }),
  },
  {
    name: 'Embedding',
    targets: ['emb', 'head'],
    build: (b) => new EmbHead(b),
    input: (b, r) =>
      tensor(
        Int32Array.from({ length: 10 }, () => Math.floor(r.next() * 40)),
        [2, 5],
        { backend: b, dtype: 'int32' },
      ),
  },
  {
    name: 'Conv2d',
    targets: ['c1', 'c2'],
    build: (b) => new ConvNet(b),
    input: (b, r) => tensor(r.fillNormal(2 * 3 * 5 * 5), [2, 3, 5, 5], { backend: b }),
  },
  {
    name: 'Conv1D',
    targets: ['c_fc', 'c_proj'],
    build: (b) => new Conv1DNet(b),
    input: (b, r) => tensor(r.fillNormal(3 * 8), [3, 8], { backend: b }),
  },
];

/** Random B (and A), and magnitudes scaled by 1 + 0.3·N(0,1), as the fixtures' `perturb`: so m ≠ ‖W + sBA‖. */
export function perturb(peft: PeftModel, seed: number): void {
  const r = new Random(seed);
  noGrad(() => {
    for (const [name, p] of peft.namedParameters()) {
      if (/lora_(embedding_)?[AB]\b/.test(name)) {
        const t = tensor(r.fillNormal(p.size, 0, 0.3), [...p.shape], { backend: p.backend });
        p.assign(t);
        t.dispose();
      } else if (name.includes('lora_magnitude_vector')) {
        const f = tensor(r.fillNormal(p.size, 1, 0.3), [...p.shape], { backend: p.backend });
        const t = ops.mul(p, f);
        p.assign(t);
        t.dispose();
        f.dispose();
      }
    }
  });
}
