/**
 * The model folder's own tokenizer (`tokenizer.json`, plus `tokenizer_config.json` when present), built by
 * `@dorajs/models`' TextTokenizer — the one place dorajs turns those files into a tokenizer (Hugging Face's
 * pure-JS @huggingface/tokenizers: no network, same ids as the Python tokenizer; BOS/EOS as transformers
 * adds them). Training reads the files itself (through `#node-fs`, so this entry stays browser-safe) and
 * keeps its own small interface: ids, the EOS id used for padding, and the files to copy beside an adapter.
 */
import { type JsonObject, TextTokenizer as ModelTokenizer, TokenizerError } from '@dorajs/models';
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
  /** The models package's tokenizer behind it (decode, chat templates, vocabulary checks). */
  readonly tokenizer?: ModelTokenizer;
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

/**
 * The tokenizer of `folder`; `eosTokenId` (config.json's eos_token_id) wins over tokenizer_config.json's
 * eos_token. A tokenizer.json the models package cannot load is a ModelFolderError naming the folder.
 */
export async function loadTokenizer(folder: string, eosTokenId: number | null = null): Promise<TextTokenizer> {
  const tokenizerFile = join(folder, TOKENIZER_FILE);
  const configFile = join(folder, TOKENIZER_CONFIG_FILE);
  const json = await readJson(tokenizerFile, folder, true);
  const config = (await readJson(configFile, folder, false)) ?? {};
  let tokenizer: ModelTokenizer;
  try {
    tokenizer = new ModelTokenizer({ tokenizer: json as JsonObject, config: config as JsonObject, source: tokenizerFile });
  } catch (e) {
    if (!(e instanceof TokenizerError)) throw e;
    throw new ModelFolderError(`${TOKENIZER_FILE} is not a tokenizer @huggingface/tokenizers can load: ${e.message}`, folder);
  }
  return {
    encode: (text) => tokenizer.encode(text),
    eosId: eosTokenId ?? tokenizer.eosTokenId,
    files: Object.keys(config).length ? [tokenizerFile, configFile] : [tokenizerFile],
    tokenizer,
  };
}
