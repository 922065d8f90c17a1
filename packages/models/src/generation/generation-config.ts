/**
 * transformers' GenerationConfig, in camelCase, with its defaults: greedy unless `doSample`, 20 tokens in
 * all unless `maxNewTokens` says otherwise, EOS ids from the model's `generation_config.json`.
 * `parseGenerationConfig` reads that file's snake_case keys; every value is validated before any work.
 */
import { ConfigFields, type JsonObject } from '../config/config-fields.js';
import { GenerationError } from '../errors.js';

export interface GenerationConfig {
  /** Tokens to generate after the prompt; takes precedence over `maxLength`. */
  readonly maxNewTokens?: number;
  /** Prompt plus new tokens (transformers' default 20), used when `maxNewTokens` is not set. */
  readonly maxLength?: number;
  /** Sample from the processed distribution; false (default) picks the most likely token. */
  readonly doSample?: boolean;
  /** Divides the logits before sampling (default 1). */
  readonly temperature?: number;
  /** Keep only the k most likely tokens when sampling (default 50; 0 = off). */
  readonly topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (default 1 = off). */
  readonly topP?: number;
  /** CTRL's penalty on tokens already in the sequence (default 1 = off). */
  readonly repetitionPenalty?: number;
  /** A row ends when it emits one of these. */
  readonly eosTokenId?: number | readonly number[];
  /** Fills finished rows and left-pads prompts (default: the first EOS id). */
  readonly padTokenId?: number;
  readonly bosTokenId?: number;
  /** A row ends when its generated text ends with one of these (needs a tokenizer). */
  readonly stopStrings?: readonly string[];
  /** Seeds the sampler (default 0); the same seed gives the same tokens. */
  readonly seed?: number;
}

/** A GenerationConfig with every default filled in and every value checked. */
export interface ResolvedGenerationConfig {
  readonly maxNewTokens: number | null;
  readonly maxLength: number;
  readonly doSample: boolean;
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly repetitionPenalty: number;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  readonly bosTokenId: number | null;
  readonly stopStrings: readonly string[];
  readonly seed: number;
}

const SNAKE: Readonly<Record<string, keyof GenerationConfig>> = {
  max_new_tokens: 'maxNewTokens',
  max_length: 'maxLength',
  do_sample: 'doSample',
  temperature: 'temperature',
  top_k: 'topK',
  top_p: 'topP',
  repetition_penalty: 'repetitionPenalty',
  eos_token_id: 'eosTokenId',
  pad_token_id: 'padTokenId',
  bos_token_id: 'bosTokenId',
  stop_strings: 'stopStrings',
};

/** Reads a `generation_config.json` object (`file` names it in errors); unknown keys are ignored. */
export function parseGenerationConfig(json: JsonObject, file = 'generation_config.json'): GenerationConfig {
  const out: Record<string, unknown> = {};
  for (const [snake, camel] of Object.entries(SNAKE)) {
    const v = json[snake];
    if (v === undefined || v === null) continue;
    out[camel] = snake === 'stop_strings' && typeof v === 'string' ? [v] : v;
  }
  try {
    resolveGenerationConfig(out as GenerationConfig);
  } catch (error) {
    throw new GenerationError(`${file}: ${(error as Error).message}`);
  }
  return out as GenerationConfig;
}

/** Merges configs left to right (later wins) and validates the result. */
export function resolveGenerationConfig(...configs: readonly (GenerationConfig | undefined)[]): ResolvedGenerationConfig {
  const c: GenerationConfig = Object.assign({}, ...configs.filter(Boolean).map((x) => dropUndefined(x!)));
  const f = new ConfigFields(toSnake(c), 'generation config');
  const eos = c.eosTokenId === undefined ? [] : typeof c.eosTokenId === 'number' ? [c.eosTokenId] : [...c.eosTokenId];
  for (const id of eos) if (!Number.isInteger(id) || id < 0) throw new GenerationError(`eosTokenId ${id} is not a token id`);
  const tokenId = (name: 'padTokenId' | 'bosTokenId'): number | null => {
    const v = c[name];
    if (v === undefined) return null;
    if (!Number.isInteger(v) || v < 0) throw new GenerationError(`${name} ${v} is not a token id`);
    return v;
  };
  const temperature = c.temperature ?? 1;
  if (!(temperature > 0) || !Number.isFinite(temperature))
    throw new GenerationError(`temperature must be a positive number, got ${temperature}`);
  const topK = c.topK ?? 50;
  if (!Number.isInteger(topK) || topK < 0) throw new GenerationError(`topK must be a non-negative integer, got ${topK}`);
  const topP = c.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new GenerationError(`topP must be in (0, 1], got ${topP}`);
  const repetitionPenalty = c.repetitionPenalty ?? 1;
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    throw new GenerationError(`repetitionPenalty must be a positive number, got ${repetitionPenalty}`);
  }
  const maxNewTokens = c.maxNewTokens ?? null;
  if (maxNewTokens !== null && (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)) {
    throw new GenerationError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  }
  const stopStrings = c.stopStrings ?? [];
  if (!Array.isArray(stopStrings) || stopStrings.some((s) => typeof s !== 'string' || s === '')) {
    throw new GenerationError(`stopStrings must be non-empty strings, got ${JSON.stringify(stopStrings)}`);
  }
  const seed = c.seed ?? 0;
  if (!Number.isInteger(seed)) throw new GenerationError(`seed must be an integer, got ${seed}`);
  const padTokenId = tokenId('padTokenId') ?? eos[0] ?? null;
  return {
    maxNewTokens,
    maxLength: f.size('max_length', 20),
    doSample: f.boolean('do_sample', false),
    temperature,
    topK,
    topP,
    repetitionPenalty,
    eosTokenIds: eos,
    padTokenId,
    bosTokenId: tokenId('bosTokenId'),
    stopStrings,
    seed,
  };
}

function dropUndefined(c: GenerationConfig): GenerationConfig {
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as GenerationConfig;
}

function toSnake(c: GenerationConfig): JsonObject {
  const out: Record<string, unknown> = {};
  for (const [snake, camel] of Object.entries(SNAKE)) if (c[camel] !== undefined) out[snake] = c[camel];
  return out;
}
