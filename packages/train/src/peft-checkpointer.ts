/**
 * Checkpoints of a PEFT model: the adapter in PEFT's own format (`savePretrained`), so every checkpoint
 * folder is also a loadable adapter. Restoring loads that adapter under a temporary name through PEFT's
 * validating loader and copies its tensors into the live adapter's parameters (float32, exact).
 */
import type { Parameter } from '@dorajs/core';
import type { PeftModel } from '@dorajs/peft';
import { CheckpointError } from './errors.js';
import type { ModelCheckpointer } from './model-checkpointer.js';
import { join } from '#node-fs';

// No leading underscore: module properties starting with '_' are outside the module tree.
const RESTORE_NAME = 'dorajs_resume';

export function peftCheckpointer(peft: PeftModel, adapterName = peft.activeAdapter): ModelCheckpointer {
  const folder = (dir: string) => (adapterName === 'default' ? dir : join(dir, adapterName));
  return {
    async save(dir, fs) {
      await peft.savePretrained(dir, { selectedAdapters: [adapterName], fs });
    },
    async restore(dir) {
      // PEFT's loader switches the model to eval mode for a frozen adapter; put the mode back afterwards.
      const wasTraining = peft.training;
      try {
        await peft.loadAdapter(folder(dir), RESTORE_NAME, { isTrainable: false });
      } catch (e) {
        peft.train(wasTraining);
        throw new CheckpointError(`cannot load the adapter saved in the checkpoint: ${(e as Error).message}`, dir, { cause: e });
      }
      try {
        copyAdapter(peft, RESTORE_NAME, adapterName, dir);
      } finally {
        peft.deleteAdapter(RESTORE_NAME);
        peft.train(wasTraining);
      }
    },
  };
}

/** Assigns every tensor of adapter `from` to the same-named tensor of adapter `to`. */
function copyAdapter(peft: PeftModel, from: string, to: string, dir: string): void {
  const params = new Map<string, Parameter>(peft.stateDict());
  const source = `.${from}.`;
  let copied = 0;
  for (const [name, p] of params) {
    if (!name.includes(source)) continue;
    const target = params.get(name.replace(source, `.${to}.`));
    if (!target) throw new CheckpointError(`the checkpoint's '${name}' has no counterpart in adapter '${to}'`, dir);
    target.assign(p);
    copied++;
  }
  if (copied === 0) throw new CheckpointError(`the checkpoint holds no tensors for adapter '${to}'`, dir);
}
