/**
 * `dora run`: logits of a Hugging Face causal LM (optionally with a PEFT adapter, optionally merged) for
 * token ids, written as safetensors key `logits` (F32, [batch, seq, vocab]).
 */
import { noGrad, type Tensor, tidy, toHostTensor } from '@dorajs/core';
import { checkOutputPath, saveSafetensors } from '@dorajs/core/node';
import { tokenIds } from '@dorajs/models';
import { loadModel } from '@dorajs/models/node';
import { PeftModel } from '@dorajs/peft';
import type { CommandSpec } from '../args.js';
import { selectBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import { readIdsFile } from '../ids.js';
import type { Command } from '../main.js';

const spec: CommandSpec = {
  name: 'run',
  summary: 'Run a model on token ids and write its logits (safetensors key `logits`, F32 [batch, seq, vocab]).',
  flags: {
    model: {
      type: 'string',
      description: 'Hugging Face model folder (config.json + model.safetensors or shards)',
      required: true,
      placeholder: 'DIR',
    },
    adapter: { type: 'string', description: 'PEFT adapter folder (adapter_config.json + adapter_model.safetensors)', placeholder: 'DIR' },
    ids: { type: 'string', description: 'token ids: JSON [[…], …] or safetensors with key `ids`', required: true, placeholder: 'FILE' },
    out: { type: 'string', description: 'output safetensors file', required: true, placeholder: 'FILE' },
    merge: { type: 'boolean', description: 'merge the adapter into the weights before running' },
  },
  examples: ['dora run --model ./llama --adapter ./dora-adapter --ids ids.json --out logits.safetensors'],
};

export const runCommand: Command = {
  spec,
  async run({ flags, log, fs, report }) {
    // Before any work: the output may not be a folder, sit under a file, be unwritable, or be an input.
    const inputs = [flags.model as string, flags.ids as string, ...(typeof flags.adapter === 'string' ? [flags.adapter] : [])];
    await checkOutputPath(flags.out as string, { kind: 'file', inputs, ...(fs ? { fs } : {}) });
    const idsPath = flags.ids as string;
    const idsInput = await readIdsFile(idsPath);
    const backend = await selectBackend(flags.backend, log);
    const { model: base } = await loadModel(flags.model as string, { backend });
    let forward = (x: Tensor) => base.forward(x);
    if (typeof flags.adapter === 'string') {
      const peft = await PeftModel.fromPretrained(base, flags.adapter);
      if (flags.merge) {
        const merged = await peft.mergeAndUnload();
        forward = (x) => merged.forward(x);
      } else {
        forward = (x) => peft.forward(x);
      }
    } else if (flags.merge) {
      throw new UsageError('--merge needs --adapter');
    }
    const ids = tokenIds(idsInput, { vocabSize: base.vocabSize, backend, source: idsPath });
    const logits = noGrad(() => tidy(() => forward(ids)));
    await saveSafetensors(flags.out as string, new Map([['logits', await toHostTensor(logits, 'F32')]]), undefined, {
      report,
      ...(fs ? { fs } : {}),
    });
    log(`dora: wrote logits [${logits.shape.join(', ')}] to ${String(flags.out)}\n`);
    logits.dispose();
    ids.dispose();
    base.dispose();
    backend.dispose();
  },
};
