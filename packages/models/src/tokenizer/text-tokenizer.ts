/**
 * A model's tokenizer as transformers loads it: `tokenizer.json` through @huggingface/tokenizers (same ids
 * as the Python tokenizer; its post-processor adds BOS/EOS as transformers does), special tokens from
 * `tokenizer_config.json`, and the chat template (Jinja, through @huggingface/jinja) rendered with
 * transformers' variables (@huggingface/jinja provides `raise_exception`). Browser-safe: it takes parsed JSON; `loadTokenizer` (node) reads a folder.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import type { JsonObject } from '../config/config-fields.js';
import { TokenizerError } from '../errors.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

export interface TextTokenizerFiles {
  /** Parsed tokenizer.json. */
  readonly tokenizer: JsonObject;
  /** Parsed tokenizer_config.json (special tokens, chat template); default {}. */
  readonly config?: JsonObject;
  /** A chat template from chat_template.jinja, which wins over tokenizer_config.json's. */
  readonly chatTemplate?: string;
  /** Names the source in errors (the folder). */
  readonly source?: string;
}

export class TextTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** One more than the largest id the tokenizer can produce (added tokens included). */
  readonly vocabSize: number;
  readonly chatTemplate: string | null;
  readonly source: string;
  private readonly _tokenizer: Tokenizer;
  private readonly _config: JsonObject;

  constructor(files: TextTokenizerFiles) {
    this.source = files.source ?? 'tokenizer.json';
    this._config = files.config ?? {};
    try {
      this._tokenizer = new Tokenizer(files.tokenizer, this._config);
    } catch (error) {
      throw new TokenizerError(`tokenizer.json cannot be loaded by @huggingface/tokenizers: ${(error as Error).message}`, this.source);
    }
    this.bosToken = tokenContent(this._config['bos_token']);
    this.eosToken = tokenContent(this._config['eos_token']);
    this.bosTokenId = this.bosToken === null ? null : (this._tokenizer.token_to_id(this.bosToken) ?? null);
    this.eosTokenId = this.eosToken === null ? null : (this._tokenizer.token_to_id(this.eosToken) ?? null);
    let max = -1;
    for (const id of this._tokenizer.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    this.chatTemplate = files.chatTemplate ?? readChatTemplate(this._config['chat_template']);
  }

  /** Token ids; `addSpecialTokens` (default true) lets the post-processor add BOS/EOS as transformers does. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this._tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return this._tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | null {
    return this._tokenizer.token_to_id(token) ?? null;
  }

  /**
   * The chat rendered as the model was trained to see it (transformers' apply_chat_template with
   * tokenize=False): `messages`, `add_generation_prompt` and the special tokens.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (this.chatTemplate === null)
      throw new TokenizerError('has no chat_template (tokenizer_config.json or chat_template.jinja)', this.source);
    const specials = Object.fromEntries(
      ['bos_token', 'eos_token', 'unk_token', 'pad_token'].map((k) => [k, tokenContent(this._config[k]) ?? '']),
    );
    try {
      return new Template(this.chatTemplate).render({
        ...specials,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (error) {
      throw new TokenizerError(`chat template failed: ${(error as Error).message}`, this.source);
    }
  }

  /** Ids of a chat (the template places BOS itself, so none is added: transformers' tokenize=True). */
  encodeChat(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  /** Refuses a tokenizer whose ids do not fit the model's embedding table. */
  checkVocabulary(modelVocabSize: number, modelFile = 'config.json'): void {
    if (this.vocabSize > modelVocabSize) {
      throw new TokenizerError(
        `produces ids up to ${this.vocabSize - 1}, but the model (${modelFile}) has vocab_size ${modelVocabSize}: the tokenizer is for another model`,
        this.source,
      );
    }
  }
}

function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string')
    return (value as { content: string }).content;
  return null;
}

/** tokenizer_config.json's chat_template: a string, or a list of { name, template } where 'default' is used. */
function readChatTemplate(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const entry = value.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default');
    const template = (entry as { template?: unknown } | undefined)?.template;
    return typeof template === 'string' ? template : null;
  }
  return null;
}
