import { describe, it } from 'vitest';
import { cpu } from './helpers/backend.js';
import { ConvNet, EmbHead, MLP } from './helpers/models.js';
import { checkGradients, checkMerged, checkOutputs, loadCase, type ParityCase } from './helpers/parity.js';

const cases: ParityCase[] = [
  { name: 'linear', build: (b) => new MLP(b) },
  { name: 'linear3d', build: (b) => new MLP(b) },
  { name: 'lora_plain', build: (b) => new MLP(b) },
  { name: 'embedding', build: (b) => new EmbHead(b) },
  { name: 'conv2d', build: (b) => new ConvNet(b) },
];

describe.each(cases)('PEFT fixture $name (from files on disk)', (c) => {
  it('eval outputs, disabled, cached and parameters match PEFT', async () => {
    const backend = cpu();
    const { peft, fx } = await loadCase(c, backend);
    await checkOutputs(peft, fx, backend);
  });

  it('train-mode output and every gradient match PEFT', async () => {
    const backend = cpu();
    const { peft, fx } = await loadCase(c, backend);
    await checkGradients(peft, fx, backend);
  });

  it('mergeAndUnload matches out.merged and merged.safetensors', async () => {
    const backend = cpu();
    const { peft, fx } = await loadCase(c, backend);
    await checkMerged(peft, fx, backend, c.name);
  });
});
