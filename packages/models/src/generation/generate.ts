/**
 * `generate`: one decoding loop for every architecture, as transformers' GenerationMixin runs it. Prompts
 * are left-padded to one width; a prefill fills the KV cache and computes the head for the last position
 * only; then one token per row per step until every row has emitted an EOS id or a stop string, or
 * `maxNewTokens` is reached, or the caller aborts. Finished rows are fed the pad id (their output ignores
 * it). The cache stays on the backend; per step only the picked ids (greedy) or the last position's logits
 * (sampling, repetition penalty) come back to the host. A model that asks for it (`needsCacheRebuild`:
 * Phi-3 once LongRoPE passes its original context) has its cache emptied and the whole sequence run
 * again, as transformers' Phi-3 `prepare_inputs_for_generation` does. Adapters behave as in forward: a PEFT model runs
 * with its active adapters, inside `disableAdapter`, merged, or one adapter per row (`adapterNames`).
 */
import { noGrad, ops, Random, type Tensor, tensor, tidy } from '@dorajs/core';
import { GenerationAbortedError, GenerationError } from '../errors.js';
import { CausalLM } from '../shared/causal-lm.js';
import type { KVCache } from '../shared/kv-cache.js';
import { type GenerationConfig, type ResolvedGenerationConfig, resolveGenerationConfig } from './generation-config.js';
import { nextToken } from './logits-processors.js';

/** Receives new tokens as they are picked (transformers' BaseStreamer). */
export interface GenerationStreamer {
  /** This step's token of every row (finished rows get the pad id). */
  put(tokens: readonly number[]): void;
  /** Generation finished (also after an abort). */
  end(): void;
}

/** A PEFT model (`@dorajs/peft`'s PeftModel) or anything wrapping a CausalLM the same way. */
export interface AdapterModel {
  getBaseModel(): unknown;
  withAdapterNames<T>(adapterNames: readonly string[], fn: () => T): T;
}

export interface GenerateOptions extends GenerationConfig {
  /** The model folder's generation_config.json (see `parseGenerationConfig`); options given here win. */
  readonly generationConfig?: GenerationConfig;
  /** Rectangular prompts with padding: 1 for a token, 0 for padding (default: ragged prompts are left-padded). */
  readonly attentionMask?: readonly (readonly number[])[];
  readonly streamer?: GenerationStreamer;
  /** Aborting stops after the current step with a GenerationAbortedError holding the tokens so far. */
  readonly signal?: AbortSignal;
  /** One adapter name per row (`'__base__'` = none); needs a PEFT model. */
  readonly adapterNames?: readonly string[];
  /** Decodes generated ids, for `stopStrings`. */
  readonly tokenizer?: { decode(ids: readonly number[]): string };
}

export type FinishReason = 'eos' | 'stop' | 'length';

export interface GenerateOutput {
  /** Each row's prompt (without padding) followed by its new tokens. */
  readonly sequences: number[][];
  /** Each row's new tokens, up to and including the EOS id or stop string's last token. */
  readonly newTokens: number[][];
  readonly finishReasons: FinishReason[];
  /** Real (non-padding) prompt tokens over all rows. */
  readonly promptTokens: number;
  readonly prefillMs: number;
  /** Decode steps after the prefill (each adds one token per row) and their time. */
  readonly decodeSteps: number;
  readonly decodeMs: number;
}

export async function generate(
  model: CausalLM | AdapterModel,
  inputIds: readonly (readonly number[])[],
  options: GenerateOptions = {},
): Promise<GenerateOutput> {
  // ---- validate everything before any work
  const peft = model instanceof CausalLM ? null : model;
  const lm = peft ? peft.getBaseModel() : model;
  if (!(lm instanceof CausalLM)) throw new GenerationError('generate: the model is neither a CausalLM nor a PEFT model wrapping one');
  const config = resolveGenerationConfig(options.generationConfig, options);
  const prompts = layoutPrompts(inputIds, options.attentionMask, lm, config);
  const { batch, width } = prompts;
  const maxNew = config.maxNewTokens ?? Math.max(0, config.maxLength - width);
  if (config.stopStrings.length && !options.tokenizer) throw new GenerationError('generate: stopStrings need a tokenizer to decode with');
  if (options.adapterNames) {
    if (!peft) throw new GenerationError('generate: adapterNames need a PEFT model');
    if (options.adapterNames.length !== batch) {
      throw new GenerationError(`generate: ${options.adapterNames.length} adapterNames for ${batch} prompts`);
    }
  }
  const run = <T>(fn: () => T): T => (options.adapterNames ? peft!.withAdapterNames(options.adapterNames, fn) : fn());
  const signal = options.signal;
  const newTokens: number[][] = Array.from({ length: batch }, () => []);
  const finish: (FinishReason | null)[] = Array<FinishReason | null>(batch).fill(null);
  const output = (prefillMs: number, decodeSteps: number, decodeMs: number): GenerateOutput => ({
    sequences: prompts.rows.map((p, b) => [...p, ...newTokens[b]!]),
    newTokens,
    finishReasons: finish.map((f) => f ?? 'length'),
    promptTokens: prompts.rows.reduce((s, p) => s + p.length, 0),
    prefillMs,
    decodeSteps,
    decodeMs,
  });
  if (signal?.aborted) throw new GenerationAbortedError(output(0, 0, 0));
  if (maxNew === 0) return output(0, 0, 0);

  // ---- prefill, then one token per step
  const capacity = Math.min(width + maxNew, lm.maxPositions);
  const random = new Random(config.seed);
  const pad = config.padTokenId ?? 0;
  const backend = lm.parameters()[0]!.backend;
  const cache = lm.createCache(batch, capacity, backend);
  try {
    let t0 = performance.now();
    let ids = prompts.ids;
    let mask: Uint8Array | undefined = prompts.mask;
    let prefill = true;
    let prefillMs = 0;
    let steps = 0;
    /** Each step's fed ids [batch], for a cache rebuild. */
    const fed: Int32Array[] = [];
    for (;;) {
      const input = tensor(ids, [batch, ids.length / batch], { backend, dtype: 'int32' });
      let picked: Int32Array;
      try {
        picked = await pick(lm, input, cache, mask, run, config, (b) => [...prompts.rows[b]!, ...newTokens[b]!], random);
      } finally {
        input.dispose();
      }
      if (prefill) {
        prefillMs = performance.now() - t0;
        t0 = performance.now();
        prefill = false;
      } else steps++;
      for (let b = 0; b < batch; b++) {
        if (finish[b]) picked[b] = pad;
        else {
          newTokens[b]!.push(picked[b]!);
          if (config.eosTokenIds.includes(picked[b]!)) finish[b] = 'eos';
          else if (stopped(newTokens[b]!, config, options.tokenizer)) finish[b] = 'stop';
        }
      }
      options.streamer?.put(Array.from(picked));
      const done = finish.every((f, b) => f !== null || newTokens[b]!.length >= maxNew) || cache.length >= capacity;
      if (done || signal?.aborted) {
        options.streamer?.end();
        const result = output(prefillMs, steps, performance.now() - t0);
        if (!done) throw new GenerationAbortedError(result);
        return result;
      }
      fed.push(picked);
      if (lm.needsCacheRebuild(cache.length, 1)) {
        // Phi-3 LongRoPE past its original context: every position again (prompt, then each step's ids).
        [ids, mask] = rebuild(prompts, fed);
        cache.reset();
      } else {
        ids = picked;
        mask = undefined;
      }
      // Let the event loop deliver an abort between steps.
      if (signal) await yieldToEventLoop();
    }
  } finally {
    cache.dispose();
  }
}

/**
 * Resolves after the event loop has run its pending tasks (a UI event, a signal handler, a due timer) — through
 * a MessageChannel message where there is one, since setTimeout(0) waits at least 1 ms in Node and 4 ms in a
 * page once timers nest, each decode step.
 */
function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise<void>((resolve) => setTimeout(resolve, 0));
  return new Promise<void>((resolve) => {
    // The web's MessagePort (Node's has the same onmessage; its types only declare the EventEmitter side).
    const { port1, port2 } = new MessageChannel() as unknown as {
      port1: { onmessage: (() => void) | null; close(): void };
      port2: { postMessage(message: null): void };
    };
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/**
 * Ids and mask [batch · (width + steps)] of the whole sequence so far: the left-padded prompts, then the
 * ids fed at each step (finished rows' pad ids count as tokens, as transformers' attention mask has them).
 */
function rebuild(prompts: PromptLayout, fed: readonly Int32Array[]): [Int32Array, Uint8Array] {
  const { batch, width } = prompts;
  const seq = width + fed.length;
  const ids = new Int32Array(batch * seq);
  const mask = new Uint8Array(batch * seq).fill(1);
  for (let b = 0; b < batch; b++) {
    ids.set(prompts.ids.subarray(b * width, (b + 1) * width), b * seq);
    mask.set(prompts.mask.subarray(b * width, (b + 1) * width), b * seq);
    fed.forEach((step, s) => {
      ids[b * seq + width + s] = step[b]!;
    });
  }
  return [ids, mask];
}

/** One forward step and the next token of every row. */
async function pick(
  lm: CausalLM,
  input: Tensor,
  cache: KVCache,
  mask: Uint8Array | undefined,
  run: <T>(fn: () => T) => T,
  config: ResolvedGenerationConfig,
  seen: (row: number) => number[],
  random: Random,
): Promise<Int32Array> {
  const batch = input.shape[0]!;
  const greedy = !config.doSample && config.repetitionPenalty === 1;
  const out = run(() =>
    tidy(() =>
      noGrad(() => {
        const logits = lm.forward(input, { cache, attentionMask: mask, logitsToKeep: 1 });
        return greedy ? ops.argMax(logits) : logits;
      }),
    ),
  );
  try {
    if (greedy) return Int32Array.from((await out.data()) as ArrayLike<number>);
    const values = await out.float32();
    const vocab = values.length / batch;
    return Int32Array.from({ length: batch }, (_, b) => nextToken(values.slice(b * vocab, (b + 1) * vocab), seen(b), config, random));
  } finally {
    out.dispose();
  }
}

function stopped(tokens: readonly number[], config: ResolvedGenerationConfig, tokenizer: GenerateOptions['tokenizer']): boolean {
  if (!config.stopStrings.length || !tokenizer) return false;
  const text = tokenizer.decode(tokens);
  return config.stopStrings.some((s) => text.endsWith(s));
}

/**
 * Refuses a prompt of `tokens` (padding included) that a model of `maxPositions` (`CausalLM.maxPositions`,
 * or `maxPositionsOf(config.json)` before the weights are read) cannot hold.
 */
export function checkPromptFits(tokens: number, maxPositions: number): void {
  if (tokens > maxPositions) {
    throw new GenerationError(
      `generate: a prompt of ${tokens} tokens is longer than the model's ${maxPositions} positions (max_position_embeddings)`,
    );
  }
}

interface PromptLayout {
  readonly batch: number;
  readonly width: number;
  /** Each row's real tokens. */
  readonly rows: number[][];
  /** [batch · width] left-padded ids. */
  readonly ids: Int32Array;
  /** [batch · width] 1 = token, 0 = padding. */
  readonly mask: Uint8Array;
}

function layoutPrompts(
  inputIds: readonly (readonly number[])[],
  attentionMask: readonly (readonly number[])[] | undefined,
  lm: CausalLM,
  config: ResolvedGenerationConfig,
): PromptLayout {
  const batch = inputIds.length;
  if (batch === 0) throw new GenerationError('generate: no prompts');
  const width = Math.max(...inputIds.map((r) => r.length));
  if (width === 0) throw new GenerationError('generate: every prompt is empty');
  checkPromptFits(width, lm.maxPositions);
  if (attentionMask && (attentionMask.length !== batch || attentionMask.some((m, b) => m.length !== inputIds[b]!.length))) {
    throw new GenerationError('generate: attentionMask must have the shape of inputIds');
  }
  const pad = config.padTokenId ?? 0;
  const ids = new Int32Array(batch * width).fill(pad);
  const mask = new Uint8Array(batch * width);
  const rows: number[][] = [];
  inputIds.forEach((row, b) => {
    const offset = width - row.length;
    const real: number[] = [];
    row.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= lm.vocabSize) {
        throw new GenerationError(`generate: token id ${id} at [${b}, ${i}] is outside the vocabulary (vocab_size ${lm.vocabSize})`);
      }
      const m = attentionMask ? attentionMask[b]![i]! : 1;
      if (m !== 0 && m !== 1) throw new GenerationError(`generate: attentionMask[${b}][${i}] is ${m}; it must be 0 or 1`);
      ids[b * width + offset + i] = id;
      mask[b * width + offset + i] = m;
      if (m) real.push(id);
    });
    if (real.length === 0) throw new GenerationError(`generate: prompt ${b} has no tokens`);
    rows.push(real);
  });
  return { batch, width, rows, ids, mask };
}
