/**
 * The model folder's own tokenizer (`tokenizer.json`, plus `tokenizer_config.json` when present) through
 * Hugging Face's pure-JS @huggingface/tokenizers: no network, same ids as the Python tokenizer.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFolderError } from '../errors.js';
import { join, readFile } from '#node-fs';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

export interface TextTokenizer {
  /** Token ids, with the special tokens the tokenizer's post-processor adds (e.g. Llama's BOS). */
  encode(text: string): number[];
  /** End-of-sequence id (used for padding, as PEFT's example sets pad = eos), or null. */
  readonly eosId: number | null;
  /** The folder's tokenizer files, to copy next to a saved adapter. */
  readonly files: readonly string[];
}

async function readJson(file: string, folder: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ModelFolderError(`cannot read ${file}: ${(e as Error).message}`, folder);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ModelFolderError(`${file} is not a JSON object: ${(e as Error).message}`, folder);
  }
}

function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string')
    return (value as { content: string }).content;
  return null;
}

export async function loadTokenizer(folder: string, eosTokenId: number | null = null): Promise<TextTokenizer> {
  const tokenizerFile = join(folder, TOKENIZER_FILE);
  const configFile = join(folder, TOKENIZER_CONFIG_FILE);
  const json = await readJson(tokenizerFile, folder, true);
  const config = (await readJson(configFile, folder, false)) ?? {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json!, config);
  } catch (e) {
    throw new ModelFolderError(`${TOKENIZER_FILE} is not a tokenizer @huggingface/tokenizers can load: ${(e as Error).message}`, folder);
  }
  const eosToken = tokenContent(config['eos_token']);
  const eosId = eosTokenId ?? (eosToken !== null ? (tokenizer.token_to_id(eosToken) ?? null) : null);
  return {
    encode: (text) => tokenizer.encode(text).ids,
    eosId,
    files: Object.keys(config).length ? [tokenizerFile, configFile] : [tokenizerFile],
  };
}
