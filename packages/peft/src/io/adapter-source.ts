/**
 * Where an adapter comes from: a directory on disk (Node; PEFT's `save_pretrained` output) or the two files
 * held in memory (browsers, tests). Tensors are described from the header first and read only after the
 * whole adapter has been validated against the model.
 */
import { type HostTensor, parseSafetensors } from '@dorajs/core';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME } from '../config/config-json.js';
import { AdapterFileError } from '../errors.js';
import { openAdapterDirectory } from '#node-io';

/** The files of an adapter held in memory. */
export interface AdapterFiles {
  /** adapter_config.json as text or as a parsed object. */
  readonly config: string | object;
  /** adapter_model.safetensors bytes. */
  readonly weights: Uint8Array;
  /** A name for error messages (default '<memory>'). */
  readonly name?: string;
}

export type AdapterSource = string | AdapterFiles;

export interface AdapterReader {
  readonly configFile: string;
  readonly weightsFile: string;
  configText(): Promise<string>;
  readonly keys: readonly string[];
  /** dtype (safetensors name) and shape of a key, from the header. */
  describe(key: string): { dtype: string; shape: readonly number[] } | undefined;
  read(key: string): Promise<HostTensor>;
  close(): Promise<void>;
}

export async function openAdapter(source: AdapterSource): Promise<AdapterReader> {
  if (typeof source === 'string') return openAdapterDirectory(source);
  return memoryReader(source);
}

function memoryReader(files: AdapterFiles): AdapterReader {
  const name = files.name ?? '<memory>';
  const configFile = `${name}/${ADAPTER_CONFIG_NAME}`;
  const weightsFile = `${name}/${ADAPTER_WEIGHTS_NAME}`;
  if (!(files.weights instanceof Uint8Array)) throw new AdapterFileError('missing (weights must be a Uint8Array)', weightsFile);
  const contents = parseSafetensors(files.weights, weightsFile);
  return {
    configFile,
    weightsFile,
    configText: async () => (typeof files.config === 'string' ? files.config : JSON.stringify(files.config)),
    keys: [...contents.tensors.keys()],
    describe: (key) => {
      const t = contents.tensors.get(key);
      return t ? { dtype: t.dtype, shape: t.shape } : undefined;
    },
    read: async (key) => {
      const t = contents.tensors.get(key);
      if (!t) throw new AdapterFileError(`no tensor '${key}'`, weightsFile);
      return t;
    },
    close: async () => {},
  };
}
