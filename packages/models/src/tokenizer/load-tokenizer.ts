/** Reads a model folder's tokenizer files (Node): tokenizer.json, tokenizer_config.json, chat_template.jinja. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isJsonObject, type JsonObject } from '../config/config-fields.js';
import { TokenizerError } from '../errors.js';
import { TextTokenizer } from './text-tokenizer.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

async function readText(path: string, required: boolean): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TokenizerError(`cannot be read: ${(error as Error).message}`, path);
  }
}

async function readJson(path: string, required: boolean): Promise<JsonObject | null> {
  const text = await readText(path, required);
  if (text === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TokenizerError(`is not valid JSON: ${(error as Error).message}`, path);
  }
  if (!isJsonObject(json)) throw new TokenizerError('must hold a JSON object', path);
  return json;
}

/** The tokenizer of a Hugging Face model folder (tokenizer.json required). */
export async function loadTokenizer(folder: string): Promise<TextTokenizer> {
  const tokenizer = (await readJson(join(folder, TOKENIZER_FILE), true))!;
  const config = (await readJson(join(folder, TOKENIZER_CONFIG_FILE), false)) ?? {};
  const chatTemplate = (await readText(join(folder, CHAT_TEMPLATE_FILE), false)) ?? undefined;
  return new TextTokenizer({ tokenizer, config, chatTemplate, source: join(folder, TOKENIZER_FILE) });
}
