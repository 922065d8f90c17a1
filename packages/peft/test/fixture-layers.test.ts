/**
 * Every layer-level PEFT fixture case (fixtures/peft, PEFT 0.21.0) through peft's real LoRA/DoRA layers,
 * from the files on disk, on every parity backend: eval outputs, the disabled and cached paths, parameters,
 * train-mode outputs, every gradient and the merge. The model-level cases (llama, gpt2, llama_embed) need
 * @dorajs/models and run in its tests.
 */
import { readdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { disposeAll, parityBackends } from './helpers/backends.js';
import { FIXTURES } from './helpers/fixtures.js';
import { ConvNet, ConvNet1d, ConvNet3d, EmbHead, MLP } from './helpers/models.js';
import { checkGradients, checkMerged, checkOutputs, loadCase, type ParityCase } from './helpers/parity.js';

/** `merged: false` where merged.safetensors holds the merge after training (mlp_adamw, see its own test). */
const cases: (ParityCase & { readonly merged: boolean })[] = [
  { name: 'linear', build: (b) => new MLP(b), merged: true },
  { name: 'linear3d', build: (b) => new MLP(b), merged: true },
  { name: 'lora_plain', build: (b) => new MLP(b), merged: true },
  { name: 'embedding', build: (b) => new EmbHead(b), merged: true },
  { name: 'conv2d', build: (b) => new ConvNet(b), merged: true },
  { name: 'conv1d', build: (b) => new ConvNet1d(b), merged: true },
  { name: 'conv3d', build: (b) => new ConvNet3d(b), merged: true },
  { name: 'mlp_adamw', build: (b) => new MLP(b, [12, 20, 6], [true, false]), merged: false },
];
const MODEL_LEVEL = ['gpt2', 'llama', 'llama_embed'];

const backends = await parityBackends();
afterAll(() => disposeAll(backends));

it('covers every case in fixtures/peft (a new fixture without a test fails here)', () => {
  const onDisk = readdirSync(FIXTURES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  expect([...cases.map((c) => c.name), ...MODEL_LEVEL].sort()).toEqual(onDisk.sort());
});

describe.each(backends)('on $name', ({ name, backend: be, skipReason, tol }) => {
  describe.skipIf(!be).each(cases)(`PEFT fixture $name (from files on disk)${skipReason ? ` (${skipReason})` : ''}`, (c) => {
    const backend = be!;

    it(`eval outputs, disabled, cached and parameters match PEFT (≤ ${tol} on ${name})`, async () => {
      const { peft, fx } = await loadCase(c, backend);
      await checkOutputs(peft, fx, backend, tol);
      peft.dispose();
    });

    it('train-mode output and every gradient match PEFT', async () => {
      const { peft, fx } = await loadCase(c, backend);
      await checkGradients(peft, fx, backend, tol);
      peft.dispose();
    });

    if (c.merged) {
      it('mergeAndUnload matches out.merged and merged.safetensors', async () => {
        const { peft, fx } = await loadCase(c, backend);
        const merged = await checkMerged(peft, fx, backend, c.name, tol);
        merged.dispose();
      });
    }
  });
});
