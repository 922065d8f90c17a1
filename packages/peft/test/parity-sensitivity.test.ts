/**
 * The fixture parity checks must fail on a broken backend (the pattern of backends/cpu's suite-sensitivity
 * test). Each mutant is the CPU backend with one realistic bug in a kernel the DoRA layers reach; the check
 * that covers it must reject, and a control check on the same mutant must still pass (the bug, not the
 * mutant's plumbing, is what fails it).
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend, TensorInfo } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { ConvNet, EmbHead, MLP } from './helpers/models.js';
import { checkGradients, checkMerged, checkOutputs, loadCase, type ParityCase } from './helpers/parity.js';

type CpuBackend = ReturnType<typeof createCpuBackend>;

/** The CPU backend with some methods replaced (the rest inherited, so they share its storage). */
function mutant(patch: (base: CpuBackend) => Partial<Backend>): Backend {
  const base = createCpuBackend();
  return Object.assign(Object.create(base) as Backend, patch(base));
}

/** A result's values, written in place by the mutants (the CPU backend's handles hold typed arrays). */
const values = (h: unknown) => (h as { values: Float32Array }).values;

const CASES: Record<string, ParityCase> = {
  linear: { name: 'linear', build: (b) => new MLP(b) },
  lora_plain: { name: 'lora_plain', build: (b) => new MLP(b) },
  embedding: { name: 'embedding', build: (b) => new EmbHead(b) },
  conv2d: { name: 'conv2d', build: (b) => new ConvNet(b) },
};

type Check = 'outputs' | 'gradients' | 'merged';

async function check(kind: Check, caseName: string, backend: Backend): Promise<void> {
  const c = CASES[caseName]!;
  const { peft, fx } = await loadCase(c, backend);
  if (kind === 'outputs') await checkOutputs(peft, fx, backend);
  else if (kind === 'gradients') await checkGradients(peft, fx, backend);
  else await checkMerged(peft, fx, backend, c.name);
}

interface Mutation {
  readonly bug: string;
  readonly backend: () => Backend;
  readonly fails: readonly [Check, string][];
  readonly passes: readonly [Check, string];
}

const MUTATIONS: readonly Mutation[] = [
  {
    bug: 'weightNorm ignores the LoRA scale (‖W + B·A‖ instead of ‖W + s·B·A‖)',
    backend: () =>
      mutant((b) => ({
        weightNorm: (w: TensorInfo, a: TensorInfo, bb: TensorInfo, _s, o) => b.weightNorm(w as never, a as never, bb as never, 1, o),
      })),
    fails: [
      ['outputs', 'linear'],
      ['outputs', 'conv2d'],
    ],
    passes: ['outputs', 'lora_plain'],
  },
  {
    bug: 'doraCompose drops the bias',
    backend: () =>
      mutant((b) => ({
        doraCompose: (base: TensorInfo, lora: TensorInfo, g: TensorInfo, s, _bias) =>
          b.doraCompose(base as never, lora as never, g as never, s, null),
      })),
    fails: [['outputs', 'linear']],
    passes: ['gradients', 'lora_plain'],
  },
  {
    bug: 'scatterAdd loses 1e-4 of each update (the embedding gradient)',
    backend: () =>
      mutant((b) => ({
        scatterAdd: (i: TensorInfo, u: TensorInfo, n) => {
          const h = b.scatterAdd(i as never, u as never, n);
          values(h).forEach((v, k, a) => (a[k] = v * (1 - 1e-4)));
          return h;
        },
      })),
    fails: [['gradients', 'embedding']],
    passes: ['outputs', 'embedding'],
  },
  {
    bug: 'conv2dBackpropFilter ignores the padding (the conv weight gradients)',
    backend: () =>
      mutant((b) => ({
        conv2dBackpropFilter: (x: TensorInfo, dy: TensorInfo, p, s) =>
          p.padding[0] === 0 ? b.conv2dBackpropFilter(x as never, dy as never, p, s) : b.fill(s, 0, 'float32'),
      })),
    fails: [['gradients', 'conv2d']],
    passes: ['outputs', 'conv2d'],
  },
];

describe('the fixture parity checks fail on planted bugs', () => {
  for (const m of MUTATIONS) {
    it(`${m.bug}: ${m.fails.map(([k, c]) => `${c} ${k}`).join(', ')} fail; ${m.passes[1]} ${m.passes[0]} passes`, async () => {
      for (const [kind, name] of m.fails) {
        const backend = m.backend();
        await expect(check(kind, name, backend), `${name} ${kind} must fail`).rejects.toThrow();
        backend.dispose();
      }
      const backend = m.backend();
      await check(m.passes[0], m.passes[1], backend);
      backend.dispose();
    });
  }
});
