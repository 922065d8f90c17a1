/**
 * What a Hugging Face model folder holds: `config.json`, and weights either in one `model.safetensors`
 * or in shards listed by `model.safetensors.index.json` (`weight_map`: tensor key → shard file).
 * transformers prefers the single file when both exist; so do we.
 */
import { FileError, type FileSource, parseJsonBounded, preview, readSourceText, sourceHas } from '@dorajs/core';
import { isJsonObject, type JsonObject } from '../config/config-fields.js';
import { ModelFolderError, NoWeightsError, ShardIndexError } from '../errors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Real config.json files are kilobytes; a shard index lists one line per tensor. */
export const MAX_CONFIG_BYTES = 16 * 2 ** 20;
export const MAX_INDEX_BYTES = 64 * 2 ** 20;

/** Files copied next to saved weights when present: they describe the model, not its values. */
export const COMPANION_FILES: readonly string[] = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
];

export interface ModelConfigFile {
  /** The file's exact text, so a saved folder carries it byte for byte. */
  readonly text: string;
  readonly json: JsonObject;
  readonly path: string;
}

export type WeightsLayout =
  | { readonly kind: 'single'; readonly files: readonly [string] }
  | {
      readonly kind: 'sharded';
      /** Shard file names in first-use order. */
      readonly files: readonly string[];
      /** The parsed index, re-written by the saver. */
      readonly index: JsonObject;
      /** Tensor key → shard file name. */
      readonly weightMap: ReadonlyMap<string, string>;
    };

export async function readModelConfig(source: FileSource): Promise<ModelConfigFile> {
  const path = source.describe(CONFIG_FILE);
  const text = await readSourceText(source, CONFIG_FILE, MAX_CONFIG_BYTES).catch((error: unknown) => {
    throw error instanceof FileError ? new ModelFolderError(`cannot read ${CONFIG_FILE}: ${error.reason}`, path) : error;
  });
  if (text === null) throw new ModelFolderError(`cannot read ${CONFIG_FILE}: no such file`, path);
  const json = parseJsonBounded(text, (reason) => new ModelFolderError(`is ${reason}`, path));
  if (!isJsonObject(json)) throw new ModelFolderError('must hold a JSON object', path);
  return { text, json, path };
}

export async function findWeights(source: FileSource): Promise<WeightsLayout> {
  if (await exists(source, WEIGHTS_FILE)) return { kind: 'single', files: [WEIGHTS_FILE] };
  const indexPath = source.describe(WEIGHTS_INDEX_FILE);
  const text = await readSourceText(source, WEIGHTS_INDEX_FILE, MAX_INDEX_BYTES).catch((error: unknown) => {
    throw error instanceof FileError ? new ShardIndexError(`cannot be read: ${error.reason}`, indexPath) : error;
  });
  if (text !== null) return readShardIndex(source, indexPath, text);
  const hint = (await exists(source, 'pytorch_model.bin')) ? ' — found pytorch_model.bin, but only safetensors weights are read' : '';
  throw new NoWeightsError(source.name, hint);
}

async function readShardIndex(source: FileSource, indexPath: string, text: string): Promise<WeightsLayout> {
  const index = parseJsonBounded(text, (reason) => new ShardIndexError(`cannot be read as JSON: ${reason}`, indexPath));
  const map = isJsonObject(index) ? index['weight_map'] : undefined;
  if (!isJsonObject(index) || !isJsonObject(map)) throw new ShardIndexError("must be an object with a 'weight_map' object", indexPath);
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (const [key, file] of Object.entries(map)) {
    // Shards live beside the index: a path would let a downloaded index read any file.
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file === '.' || file === '..') {
      throw new ShardIndexError(
        `weight_map[${preview(key)}] must be a shard file name in the same folder, got ${preview(file)}`,
        indexPath,
      );
    }
    weightMap.set(key, file);
    if (!files.includes(file)) files.push(file);
  }
  if (files.length === 0) throw new NoWeightsError(source.name, ` — ${WEIGHTS_INDEX_FILE} lists no tensors`);
  for (const file of files) {
    if (!(await exists(source, file))) throw new ShardIndexError(`lists shard '${file}', which does not exist`, indexPath);
  }
  return { kind: 'sharded', files, index, weightMap };
}

/** Whether the folder has `file`; one that is there but cannot be opened (a FIFO, HTTP 500) counts, and opening it says why. */
async function exists(source: FileSource, file: string): Promise<boolean> {
  return sourceHas(source, file).catch((error: unknown) => {
    if (error instanceof FileError) return true;
    throw error;
  });
}
