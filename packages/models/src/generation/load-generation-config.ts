/** Reads a model folder's generation_config.json (Node); absent = transformers' defaults. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isJsonObject } from '../config/config-fields.js';
import { GenerationError } from '../errors.js';
import { type GenerationConfig, parseGenerationConfig } from './generation-config.js';

export async function loadGenerationConfig(folder: string): Promise<GenerationConfig> {
  const path = join(folder, 'generation_config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new GenerationError(`${path}: cannot be read: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new GenerationError(`${path}: is not valid JSON: ${(error as Error).message}`);
  }
  if (!isJsonObject(json)) throw new GenerationError(`${path}: must hold a JSON object`);
  return parseGenerationConfig(json, path);
}
