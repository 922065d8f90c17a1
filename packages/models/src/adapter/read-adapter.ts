/** Node: an adapter folder's description for `checkAdapterFits` (adapter_config.json and the safetensors header only). */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SafetensorsReader } from '@dorajs/core';
import { openFileReader } from '@dorajs/core/node';
import { AdapterMismatchError } from '../errors.js';
import type { CausalLM } from '../shared/causal-lm.js';
import { type AdapterDescription, checkAdapterFits } from './check-adapter.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** Reads adapter_config.json and the header of adapter_model.safetensors of a PEFT adapter folder. */
export async function describeAdapter(dir: string): Promise<AdapterDescription> {
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  let config: unknown;
  try {
    config = JSON.parse(await readFile(configFile, 'utf8'));
  } catch (error) {
    throw new AdapterMismatchError(`${configFile}: cannot be read as JSON (${(error as Error).message})`, configFile);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) {
    throw new AdapterMismatchError(`${configFile}: must hold a JSON object`, configFile);
  }
  const bytes = await openFileReader(file);
  if (!bytes) throw new AdapterMismatchError(`${file}: no such file`, file);
  const reader = await SafetensorsReader.from(bytes);
  try {
    return { config: config as Record<string, unknown>, shapes: new Map(reader.keys.map((k) => [k, reader.entry(k).shape])), file };
  } finally {
    await reader.close();
  }
}

/** `checkAdapterFits` for an adapter folder on disk: reads no tensor data and changes nothing. */
export async function checkAdapter(model: CausalLM, dir: string): Promise<void> {
  checkAdapterFits(model, await describeAdapter(dir));
}
