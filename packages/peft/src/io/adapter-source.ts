/**
 * Where an adapter comes from: a directory on disk (Node; PEFT's `save_pretrained` output), a URL or a Hub
 * id, dropped Files, a directory handle or OPFS (anything core's resolveSource takes), or the two files held
 * in memory. Tensors are described from the header first and read only after the whole adapter has been
 * validated against the model.
 */
import {
  type FileSource,
  type HostTensor,
  parseSafetensors,
  readSourceText,
  resolveSource,
  SafetensorsReader,
  type SourceInput,
  type SourceOptions,
} from '@dorajs/core';
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

export type AdapterSource = SourceInput | AdapterFiles;

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

function isAdapterFiles(source: AdapterSource): source is AdapterFiles {
  return typeof source === 'object' && source !== null && 'weights' in source && 'config' in source;
}

export async function openAdapter(source: AdapterSource, options: SourceOptions = {}): Promise<AdapterReader> {
  if (isAdapterFiles(source)) return memoryReader(source);
  const files = await resolveSource(source, options);
  // Folders on disk keep their file-system messages (and, in a page, say they need Node).
  if (files.kind === 'directory') return openAdapterDirectory(files.name);
  return sourceReader(files);
}

/** adapter_config.json files are a few kilobytes. */
const MAX_ADAPTER_CONFIG_BYTES = 16 * 2 ** 20;

async function sourceReader(files: FileSource): Promise<AdapterReader> {
  const configFile = files.describe(ADAPTER_CONFIG_NAME);
  const weightsFile = files.describe(ADAPTER_WEIGHTS_NAME);
  const text = await readSourceText(files, ADAPTER_CONFIG_NAME, MAX_ADAPTER_CONFIG_BYTES).catch((e: unknown) => {
    throw new AdapterFileError(`cannot read the adapter config (${(e as Error).message})`, configFile, { cause: e });
  });
  if (text === null) throw new AdapterFileError('cannot read the adapter config (no such file)', configFile);
  const weights = await files.open(ADAPTER_WEIGHTS_NAME).catch((e: unknown) => {
    throw new AdapterFileError(`cannot read the adapter weights (${(e as Error).message})`, weightsFile, { cause: e });
  });
  if (!weights) throw new AdapterFileError('cannot read the adapter weights (no such file)', weightsFile);
  return safetensorsAdapterReader(configFile, text, await SafetensorsReader.from(weights));
}

/** An adapter whose weights are a safetensors file read tensor by tensor. */
export function safetensorsAdapterReader(
  configFile: string,
  configText: string,
  weights: Pick<SafetensorsReader, 'file' | 'keys' | 'has' | 'entry' | 'read' | 'close'>,
): AdapterReader {
  return {
    configFile,
    weightsFile: weights.file,
    configText: async () => configText,
    keys: weights.keys,
    describe: (key) => {
      if (!weights.has(key)) return undefined;
      const e = weights.entry(key);
      return { dtype: e.dtype, shape: e.shape };
    },
    read: (key) => weights.read(key),
    close: () => weights.close(),
  };
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
