/**
 * Saving adapters exactly as PEFT's `save_pretrained` does: per adapter an adapter_config.json (sorted,
 * indent 2, inference_mode true) and an adapter_model.safetensors (metadata {"format": "pt"}) whose keys
 * drop the adapter name and the magnitude's `.weight`. `default` goes into the directory itself, every
 * other adapter into a subfolder of its name.
 */
import { type DirectoryHandle, type HostTensor, isDirectoryHandle, serializeSafetensors, type Tensor, toHostTensor } from '@dorajs/core';
import type { FileSystem } from '@dorajs/core/node';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, configToJsonText } from '../config/config-json.js';
import type { LoraConfig } from '../config/lora-config.js';
import { AdapterFileError, AdapterNameError } from '../errors.js';
import { isLoraLayer } from '../layers/kinds.js';
import { ModulesToSaveWrapper } from '../layers/modules-to-save.js';
import type { PeftModel } from '../peft-model.js';
import type { TargetKind } from '../tuner/inject.js';
import { LoraEmbedding } from '../layers/lora-embedding.js';
import { writeAdapterFolder } from '#node-io';
import { adapterFileKeys, MODEL_PREFIX, savesEmbeddingLayer } from './adapter-keys.js';

export interface SavePretrainedOptions {
  /** Adapters to save (default: all). */
  readonly selectedAdapters?: readonly string[];
  /**
   * Also save targeted layers' base weights (`<path>.base_layer.weight`). 'auto' (PEFT's default): for
   * layers named `embed_tokens` or `lm_head`; true: those and every targeted Embedding; false: none.
   */
  readonly saveEmbeddingLayers?: boolean | 'auto';
  /** Node: the file system to write with (tests inject faults). The folder is replaced as a whole. */
  readonly fs?: FileSystem;
  /** Node: told, one line each, what was cleaned up or restored from killed runs' leftovers beside the folder. */
  readonly report?: (message: string) => void;
}

/** The tensors PEFT writes for one adapter, by file key. */
export async function adapterFileTensors(
  peft: PeftModel,
  name: string,
  saveEmbeddingLayers: boolean | 'auto' = 'auto',
): Promise<Map<string, HostTensor>> {
  const config = peft.peftConfig.get(name);
  if (!config) throw new AdapterNameError(`no adapter named '${name}'`);
  const out = new Map<string, HostTensor>();
  const put = async (key: string, t: Tensor) => out.set(key, await toHostTensor(t, 'F32'));
  const model = peft.getBaseModel();
  for (const [path, m] of model.namedModules()) {
    if (isLoraLayer(m)) {
      if (!m.settings(name)) continue;
      const kind: TargetKind = m instanceof LoraEmbedding ? 'embedding' : 'linear';
      const keys = adapterFileKeys(kind, path);
      const w = m.adapterWeights(name)!;
      await put(keys.a, w.a);
      await put(keys.b, w.b);
      // The variant's own tensors (DoRA: `<module>.lora_magnitude_vector`).
      const tensors = m.tensorsOf(name);
      for (const v of m.settingsOf(name).variant.stateTensors) await put(`${MODEL_PREFIX}${path}.${v.container}`, tensors[v.name]!);
      const saveBase =
        saveEmbeddingLayers !== false && (savesEmbeddingLayer(path) || (saveEmbeddingLayers === true && kind === 'embedding'));
      if (saveBase) await put(keys.baseWeight, m.weight);
      if (config.bias !== 'none' && m.bias) await put(keys.baseBias, m.bias);
    } else if (m instanceof ModulesToSaveWrapper) {
      const copy = m.modules_to_save.get(name);
      if (!copy) continue;
      for (const [k, p] of copy.stateDict()) await put(`${MODEL_PREFIX}${path}.${k}`, p);
    }
  }
  if (config.bias === 'all') {
    for (const [key, p] of model.stateDict()) {
      const isBias = key.split('.').pop() === 'bias';
      if (
        !isBias ||
        key.includes('.base_layer.') ||
        key.includes('.modules_to_save.') ||
        key.includes('.original_module.') ||
        key.includes('.lora_')
      )
        continue;
      await put(`${MODEL_PREFIX}${key}`, p);
    }
  }
  return out;
}

/** The adapter_config.json text PEFT would write for this adapter of this model. */
export function adapterConfigText(peft: PeftModel, config: LoraConfig): string {
  const c = config.with({ inferenceMode: true });
  c.peftVersion = config.peftVersion;
  c.autoMapping =
    config.autoMapping ??
    (config.taskType === null ? { base_model_class: peft.getBaseModel().typeName, parent_library: '@dorajs/peft' } : null);
  return configToJsonText(c);
}

/** Both files of one adapter in memory (for browsers, or to write elsewhere). */
export async function adapterFiles(
  peft: PeftModel,
  name: string,
  options: SavePretrainedOptions = {},
): Promise<{ config: string; tensors: Map<string, HostTensor> }> {
  const config = peft.peftConfig.get(name);
  if (!config) throw new AdapterNameError(`no adapter named '${name}'`);
  return { config: adapterConfigText(peft, config), tensors: await adapterFileTensors(peft, name, options.saveEmbeddingLayers) };
}

/** Where savePretrained writes: a folder on disk (Node), or a directory handle (the directory picker, OPFS). */
export type SaveTarget = string | DirectoryHandle;

export async function savePretrained(peft: PeftModel, target: SaveTarget, options: SavePretrainedOptions = {}): Promise<void> {
  const names = options.selectedAdapters ? [...options.selectedAdapters] : [...peft.peftConfig.keys()];
  const unknown = names.filter((n) => !peft.peftConfig.has(n));
  if (unknown.length) throw new AdapterNameError(`cannot save unknown adapter(s) ${unknown.map((n) => `'${n}'`).join(', ')}`);
  const adapters = [];
  for (const name of names) {
    const files = await adapterFiles(peft, name, options);
    adapters.push({ subfolder: name === 'default' ? null : name, configText: files.config, tensors: files.tensors });
  }
  if (typeof target === 'string') await writeAdapterFolder(target, adapters, options.fs, options.report);
  else if (isDirectoryHandle(target)) {
    for (const a of adapters) {
      const dir = a.subfolder === null ? target : await target.getDirectoryHandle(a.subfolder, { create: true });
      await writeAdapterHandle(dir, a.configText, a.tensors);
    }
  } else throw new AdapterFileError('expected a folder path or a directory handle to save into', String(target));
}

/** One adapter's two files as Blobs (a page offers them for download), named as PEFT names them. */
export async function adapterBlobs(
  peft: PeftModel,
  name = 'default',
  options: SavePretrainedOptions = {},
): Promise<{ readonly [ADAPTER_CONFIG_NAME]: Blob; readonly [ADAPTER_WEIGHTS_NAME]: Blob }> {
  const files = await adapterFiles(peft, name, options);
  return {
    [ADAPTER_CONFIG_NAME]: new Blob([files.config], { type: 'application/json' }),
    [ADAPTER_WEIGHTS_NAME]: new Blob([serializeSafetensors(files.tensors, { format: 'pt' }) as Uint8Array<ArrayBuffer>], {
      type: 'application/octet-stream',
    }),
  };
}

/**
 * Writes both files into a directory handle. Each file goes through a writable stream that replaces the old
 * file only on close(), so a failure leaves the previous file (or none), never half of one.
 */
async function writeAdapterHandle(dir: DirectoryHandle, configText: string, tensors: ReadonlyMap<string, HostTensor>): Promise<void> {
  const write = async (file: string, data: Uint8Array | string) => {
    const where = `${dir.name || 'directory'}/${file}`;
    try {
      const handle = await dir.getFileHandle(file, { create: true });
      if (!handle.createWritable) throw new Error('this browser cannot write files through a directory handle');
      const stream = await handle.createWritable();
      try {
        await stream.write(data as Uint8Array<ArrayBuffer> | string);
        await stream.close();
      } catch (e) {
        await stream.abort?.().catch(() => {});
        throw e;
      }
    } catch (e) {
      throw new AdapterFileError(`could not write (${(e as Error).message})`, where, { cause: e });
    }
  };
  await write(ADAPTER_WEIGHTS_NAME, serializeSafetensors(tensors, { format: 'pt' }));
  await write(ADAPTER_CONFIG_NAME, configText);
}
