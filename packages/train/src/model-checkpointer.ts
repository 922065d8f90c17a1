/**
 * How the Trainer stores and restores the trained weights inside a checkpoint folder. For a PEFT model
 * this is the adapter (`savePretrained`); for a plain module, its trainable parameters in
 * `model.safetensors`. Restoring loads the values back into the live model, in place.
 */
import { fromHostTensor, type Parameter, type Tensor, toHostTensor } from '@dorajs/core';
import { CheckpointError } from './errors.js';
import { type FileSystem, join, readSafetensors, saveSafetensors } from '#node-fs';

export interface ModelCheckpointer {
  /** Writes the weights into `dir` (which exists and is empty or holds other checkpoint files), with `fs` when given. */
  save(dir: string, fs?: FileSystem): Promise<void>;
  /** Loads the weights saved by `save` from `dir` into the live model. */
  restore(dir: string): Promise<void>;
}

export const PARAMETERS_FILE = 'model.safetensors';

/** Saves and restores named parameters exactly (float32 as stored) in `model.safetensors`. */
export function parameterCheckpointer(params: readonly (readonly [string, Parameter])[]): ModelCheckpointer {
  return {
    async save(dir, fs) {
      const tensors = new Map<string, Awaited<ReturnType<typeof toHostTensor>>>();
      for (const [name, p] of params) tensors.set(name, await toHostTensor(p));
      await saveSafetensors(join(dir, PARAMETERS_FILE), tensors, { format: 'pt' }, { fs });
    },
    async restore(dir) {
      const file = join(dir, PARAMETERS_FILE);
      const contents = await readSafetensors(file).catch((e: unknown) => {
        throw new CheckpointError(`cannot read ${PARAMETERS_FILE}: ${(e as Error).message}`, dir);
      });
      for (const [name, p] of params) {
        const host = contents.tensors.get(name);
        if (!host) throw new CheckpointError(`${PARAMETERS_FILE} has no parameter '${name}'`, dir);
        const value: Tensor = fromHostTensor(host, p.backend, { file, key: name });
        try {
          p.assign(value);
        } finally {
          value.dispose();
        }
      }
    },
  };
}
