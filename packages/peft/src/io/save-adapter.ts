/**
 * Saving adapters exactly as PEFT's `save_pretrained` does: per adapter an adapter_config.json (sorted,
 * indent 2, inference_mode true) and an adapter_model.safetensors (metadata {"format": "pt"}) whose keys
 * drop the adapter name and the magnitude's `.weight`. `default` goes into the directory itself, every
 * other adapter into a subfolder of its name.
 */
import { type HostTensor, type Tensor, toHostTensor } from '@dorajs/core';
import type { FileSystem } from '@dorajs/core/node';
import { configToJsonText } from '../config/config-json.js';
import type { LoraConfig } from '../config/lora-config.js';
import { AdapterNameError } from '../errors.js';
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

export async function savePretrained(peft: PeftModel, dir: string, options: SavePretrainedOptions = {}): Promise<void> {
  const names = options.selectedAdapters ? [...options.selectedAdapters] : [...peft.peftConfig.keys()];
  const unknown = names.filter((n) => !peft.peftConfig.has(n));
  if (unknown.length) throw new AdapterNameError(`cannot save unknown adapter(s) ${unknown.map((n) => `'${n}'`).join(', ')}`);
  const adapters = [];
  for (const name of names) {
    const files = await adapterFiles(peft, name, options);
    adapters.push({ subfolder: name === 'default' ? null : name, configText: files.config, tensors: files.tensors });
  }
  await writeAdapterFolder(dir, adapters, options.fs);
}
