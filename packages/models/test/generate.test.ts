/**
 * generate(): the cached loop gives the tokens of a plain full-forward loop, batches give each prompt's own
 * tokens, EOS / stop strings / maxNewTokens / abort end it, sampling is seeded, adapters act as in forward
 * (on, disabled, merged, one per row, DoRA with caching), and every buffer comes back.
 */
import { type Backend, noGrad, ops, Random, type Tensor, tensor, tidy } from '@dorajs/core';
import { DoraCaching, getPeftModel, LoraConfig, type PeftModel } from '@dorajs/peft';
import { describe, expect, it, vi } from 'vitest';
import {
  applyTopK,
  applyTopP,
  type CausalLM,
  createModel,
  GenerationAbortedError,
  GenerationError,
  generate,
  type GenerationStreamer,
  nextToken,
  resolveGenerationConfig,
} from '../src/index.js';
import { gpt2Config, llamaConfig } from './checkpoints.js';
import { cpu } from './helpers.js';

type Json = Readonly<Record<string, unknown>>;

function build(config: Json, backend: Backend, seed = 3): CausalLM {
  return createModel(config, { backend, random: new Random(seed) }).eval() as CausalLM;
}

/** Greedy tokens from full forwards without a cache: the definition generate() must meet. */
async function referenceGreedy(
  forward: (ids: Tensor) => Tensor,
  prompt: readonly number[],
  n: number,
  backend: Backend,
): Promise<number[]> {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const ids = tensor(Int32Array.from(seq), [1, seq.length], { backend, dtype: 'int32' });
    const next = tidy(() => noGrad(() => ops.argMax(forward(ids))));
    const all = (await next.data()) as Int32Array;
    seq.push(all[all.length - 1]!);
    next.dispose();
    ids.dispose();
  }
  return seq.slice(prompt.length);
}

const PROMPTS = [
  [3, 17, 0, 9],
  [19, 1, 4, 4, 15, 2, 11],
];

describe.each([
  ['llama', llamaConfig({ vocab_size: 24 })],
  ['gpt2', gpt2Config({ vocab_size: 24, n_positions: 32 })],
])('%s', (_name, config) => {
  it('greedy generate gives the full-forward loop tokens; a ragged batch gives each prompt its own; buffers come back', async () => {
    const backend = cpu();
    const model = build(config, backend);
    const start = backend.liveBuffers();
    const want = await Promise.all(PROMPTS.map((p) => referenceGreedy((x) => model.forward(x), p, 6, backend)));
    const batch = await generate(model, PROMPTS, { maxNewTokens: 6 });
    expect(batch.newTokens).toEqual(want);
    expect(batch.sequences).toEqual(PROMPTS.map((p, b) => [...p, ...want[b]!]));
    expect(batch.finishReasons).toEqual(['length', 'length']);
    expect(batch.promptTokens).toBe(11);
    expect(batch.decodeSteps).toBe(5);
    for (const [b, p] of PROMPTS.entries()) expect((await generate(model, [p], { maxNewTokens: 6 })).newTokens[0]).toEqual(want[b]);
    expect(backend.liveBuffers()).toBe(start);
    model.dispose();
  });
});

describe('stopping', () => {
  it('EOS ends a row (later steps feed the pad id), maxLength counts the prompt, stop strings need a tokenizer', async () => {
    const backend = cpu();
    const model = build(llamaConfig({ vocab_size: 24 }), backend);
    const free = await generate(model, PROMPTS, { maxNewTokens: 6 });
    const eos = free.newTokens[0]![2]!;
    const put: number[][] = [];
    let ended = 0;
    const streamer: GenerationStreamer = { put: (t) => put.push([...t]), end: () => ended++ };
    const stopped = await generate(model, PROMPTS, {
      maxNewTokens: 6,
      generationConfig: { eosTokenId: [99, eos], padTokenId: 0 },
      streamer,
    });
    expect(stopped.newTokens[0]).toEqual(free.newTokens[0]!.slice(0, 3));
    expect(stopped.finishReasons[0]).toBe('eos');
    const firstEos1 = free.newTokens[1]!.indexOf(eos);
    if (firstEos1 < 0) {
      expect(stopped.newTokens[1]).toEqual(free.newTokens[1]);
      expect(stopped.finishReasons[1]).toBe('length');
      expect(put.map((p) => p[0])).toEqual([...free.newTokens[0]!.slice(0, 3), 0, 0, 0]);
    }
    expect(put.length).toBe(stopped.newTokens[1]!.length);
    expect(ended).toBe(1);
    // maxLength 6 with a 4-token prompt: 2 new tokens (transformers' max_length counts the prompt).
    expect((await generate(model, [PROMPTS[0]!], { maxLength: 6 })).newTokens[0]).toEqual(free.newTokens[0]!.slice(0, 2));
    // A stop string: decode maps ids to letters; stop once the text ends with the third token's letter pair.
    const letters = { decode: (ids: readonly number[]) => ids.map((i) => String.fromCharCode(97 + i)).join('') };
    const stop = letters.decode(free.newTokens[0]!.slice(1, 3));
    const byString = await generate(model, [PROMPTS[0]!], { maxNewTokens: 6, stopStrings: [stop], tokenizer: letters });
    expect(letters.decode(byString.newTokens[0]!).endsWith(stop)).toBe(true);
    expect(byString.newTokens[0]!.length).toBeLessThanOrEqual(3);
    expect(byString.finishReasons[0]).toBe('stop');
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('an abort stops after the current step with the tokens so far and frees the cache', async () => {
    const backend = cpu();
    const model = build(llamaConfig({ vocab_size: 24 }), backend);
    const live = backend.liveBuffers();
    const controller = new AbortController();
    let steps = 0;
    const streamer: GenerationStreamer = {
      put: () => {
        if (++steps === 2) setTimeout(() => controller.abort(), 0);
      },
      end: () => {},
    };
    const error = await generate(model, PROMPTS, { maxNewTokens: 50, streamer, signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GenerationAbortedError);
    const partial = (error as GenerationAbortedError).partial;
    expect(partial.newTokens[0]!.length).toBeGreaterThanOrEqual(2);
    expect(partial.newTokens[0]!.length).toBeLessThan(50);
    expect(backend.liveBuffers()).toBe(live);
    // Already aborted: nothing runs.
    await expect(generate(model, PROMPTS, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(GenerationAbortedError);
    expect(backend.liveBuffers()).toBe(live);
    // Between steps the loop yields without a timer (setTimeout(0) costs ≥ 1 ms per token in Node, 4 ms in a page).
    const timers = vi.spyOn(globalThis, 'setTimeout');
    try {
      const out = await generate(model, PROMPTS, { maxNewTokens: 6, signal: new AbortController().signal });
      expect(out.decodeSteps).toBe(5);
      expect(timers).not.toHaveBeenCalled();
    } finally {
      timers.mockRestore();
    }
    model.dispose();
  });
});

describe('sampling', () => {
  it('is seeded; topK 1 is greedy; processors follow transformers', async () => {
    const backend = cpu();
    const model = build(llamaConfig({ vocab_size: 24 }), backend);
    const sample = (seed: number) => generate(model, PROMPTS, { maxNewTokens: 8, doSample: true, temperature: 1.5, seed });
    const [a, b, c] = [await sample(1), await sample(1), await sample(2)];
    expect(a.newTokens).toEqual(b.newTokens);
    expect(c.newTokens).not.toEqual(a.newTokens);
    const greedy = await generate(model, PROMPTS, { maxNewTokens: 8 });
    expect((await generate(model, PROMPTS, { maxNewTokens: 8, doSample: true, topK: 1, seed: 5 })).newTokens).toEqual(greedy.newTokens);
    model.dispose();

    // top-k keeps ties with the k-th score; top-p removes the low tail whose mass stays ≤ 1 − p.
    const k = Float32Array.of(1, 3, 3, 2, 0);
    applyTopK(k, 2);
    expect(Array.from(k)).toEqual([-Infinity, 3, 3, -Infinity, -Infinity]);
    const p = Float32Array.from([0.5, 0.3, 0.15, 0.05], Math.log);
    applyTopP(p, 0.8);
    expect(Array.from(p, (v) => v === -Infinity)).toEqual([false, false, true, true]);
    // Repetition penalty: positive scores divided, negative multiplied; then greedy.
    const config = resolveGenerationConfig({ repetitionPenalty: 2 });
    expect(nextToken(Float32Array.of(1.5, 1, -0.5), [0], config, new Random(0))).toBe(1);
    expect(nextToken(Float32Array.of(-0.4, -0.5), [0], config, new Random(0))).toBe(1);
  });
});

describe('adapters in generation', () => {
  async function peftModel(
    backend: Backend,
    names: readonly string[],
    dora: boolean,
  ): Promise<{ base: CausalLM; peft: PeftModel<CausalLM> }> {
    const base = build(llamaConfig({ vocab_size: 24 }), backend);
    const config = (seed: number) =>
      new LoraConfig({
        r: 4,
        loraAlpha: 8,
        useDora: dora,
        initLoraWeights: false,
        targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
        extra: { seed },
      });
    const peft = await getPeftModel(base, config(1), names[0], { random: new Random(11) });
    for (const name of names.slice(1)) await peft.addAdapter(name, config(2));
    peft.eval();
    return { base, peft };
  }

  it('on, disabled, one per row, DoRA with caching, merged: the tokens of the same model run without generate', async () => {
    const backend = cpu();
    const { base, peft } = await peftModel(backend, ['a', 'b'], true);
    const live = backend.liveBuffers();
    const n = 5;
    peft.setAdapter('a');
    const withA = await Promise.all(PROMPTS.map((p) => referenceGreedy((x) => peft.forward(x), p, n, backend)));
    const plain = await Promise.all(PROMPTS.map((p) => referenceGreedy((x) => peft.disableAdapter(() => base.forward(x)), p, n, backend)));
    peft.setAdapter('b');
    const withB = await Promise.all(PROMPTS.map((p) => referenceGreedy((x) => peft.forward(x), p, n, backend)));
    expect(withA).not.toEqual(plain);
    peft.setAdapter('a');
    expect((await generate(peft, PROMPTS, { maxNewTokens: n })).newTokens).toEqual(withA);
    expect((await DoraCaching.scope(() => generate(peft, PROMPTS, { maxNewTokens: n }))).newTokens).toEqual(withA);
    expect((await peft.disableAdapter(() => generate(peft, PROMPTS, { maxNewTokens: n }))).newTokens).toEqual(plain);
    const mixed = await generate(peft, PROMPTS, { maxNewTokens: n, adapterNames: ['b', '__base__'] });
    expect(mixed.newTokens).toEqual([withB[0], plain[1]]);
    const mixedCached = await DoraCaching.scope(() => generate(peft, PROMPTS, { maxNewTokens: n, adapterNames: ['a', 'b'] }));
    expect(mixedCached.newTokens).toEqual([withA[0], withB[1]]);
    // DoRA's cached scales stay until a forward runs with caching off (as in PEFT); then all is back.
    await generate(peft, PROMPTS, { maxNewTokens: 1, adapterNames: ['a', 'b'] });
    expect(backend.liveBuffers()).toBe(live);
    await peft.mergeAdapter(['a']);
    expect((await generate(peft, PROMPTS, { maxNewTokens: n })).newTokens).toEqual(withA);
    base.dispose();
  });
});

describe('bad input fails before any work', () => {
  it('names the culprit in one typed line', async () => {
    const backend = cpu();
    const model = build(gpt2Config({ vocab_size: 24, n_positions: 8 }), backend);
    const live = backend.liveBuffers();
    const cases: [Parameters<typeof generate>[1], Parameters<typeof generate>[2], RegExp][] = [
      [[[1, 2, 3, 4, 5, 6, 7, 8, 9]], {}, /a prompt of 9 tokens is longer than the model's 8 positions \(max_position_embeddings\)/],
      [[[1, 24]], {}, /token id 24 at \[0, 1\] is outside the vocabulary \(vocab_size 24\)/],
      [[[]], {}, /every prompt is empty/],
      [[[1]], { stopStrings: ['x'] }, /stopStrings need a tokenizer/],
      [[[1]], { adapterNames: ['a'] }, /adapterNames need a PEFT model/],
      [[[1]], { doSample: true, temperature: 0 }, /temperature must be a positive number, got 0/],
      [[[1]], { topP: 1.5 }, /topP must be in \(0, 1\], got 1.5/],
      [[[1]], { repetitionPenalty: -1 }, /repetitionPenalty must be a positive number/],
      [[[1]], { maxNewTokens: 2.5 }, /maxNewTokens must be a non-negative integer/],
      [[[1, 2]], { attentionMask: [[1, 2]] }, /attentionMask\[0\]\[1\] is 2/],
    ];
    for (const [ids, options, message] of cases) {
      const error = await generate(model, ids, options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GenerationError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
      expect(backend.liveBuffers()).toBe(live);
    }
    // A cap of the positions: generation stops when the cache holds n_positions.
    const capped = await generate(model, [[1, 2, 3, 4, 5, 6]], { maxNewTokens: 10 });
    expect(capped.newTokens[0]!.length).toBe(3);
    expect(capped.finishReasons[0]).toBe('length');
    model.dispose();
  });
});
