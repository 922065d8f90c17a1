/**
 * `dora merge`: merges a PEFT adapter into a Hugging Face checkpoint and writes the merged model with the
 * base checkpoint's tensor names, layout (GPT-2 Conv1D stays [in, out]), dtypes and file split, plus
 * config.json and tokenizer files. Merged weights keep the base's dtype (PEFT's float32 merge rounded once
 * to BF16/F16). Written to a temporary folder and renamed at the end.
 */
import { checkOutputPath } from '@dorajs/core/node';
import { loadModel, saveModel } from '@dorajs/models/node';
import { PeftModel } from '@dorajs/peft';
import type { CommandSpec } from '../args.js';
import { selectBackend } from '../backend.js';
import type { Command } from '../main.js';

const spec: CommandSpec = {
  name: 'merge',
  summary: 'Merge an adapter into a model and write the merged checkpoint folder.',
  flags: {
    model: { type: 'string', description: 'Hugging Face model folder', required: true, placeholder: 'DIR' },
    adapter: { type: 'string', description: 'PEFT adapter folder', required: true, placeholder: 'DIR' },
    out: { type: 'string', description: 'output folder (must not exist or be empty)', required: true, placeholder: 'DIR' },
    'safe-merge': { type: 'boolean', description: 'refuse to write weights containing NaN/Inf (names the module)' },
  },
  examples: ['dora merge --model ./gpt2 --adapter ./adapter --out ./gpt2-merged'],
};

export const mergeCommand: Command = {
  spec,
  async run({ flags, log, fs, report }) {
    // Before any work: the output may not be a file, be unwritable, or be, hold or lie inside an input.
    await checkOutputPath(flags.out as string, {
      kind: 'folder',
      inputs: [flags.model as string, flags.adapter as string],
      ...(fs ? { fs } : {}),
    });
    const backend = await selectBackend(flags.backend, log);
    // BF16/F16 bases stay 2 bytes per weight; each merge runs in float32 and is rounded once to the base's dtype.
    const { model, checkpoint } = await loadModel(flags.model as string, { backend, keepWidth: true });
    const peft = await PeftModel.fromPretrained(model, flags.adapter as string);
    const merged = await peft.mergeAndUnload({ safeMerge: !!flags['safe-merge'] });
    await saveModel(merged, flags.out as string, { like: checkpoint, report, ...(fs ? { fs } : {}) });
    log(`dora: wrote merged model to ${String(flags.out)}\n`);
    merged.dispose();
    backend.dispose();
  },
};
