/**
 * The KV-cache path: prefill + one-token decode steps give the logits of the full forward at every step,
 * a left-padded batch gives each prompt's own logits, bad calls fail before touching the cache, and
 * every buffer comes back.
 */
import { type Backend, noGrad, ops, Parameter, Random, type Tensor, tensor, tidy, zeros } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { type CausalLM, createModel, GenerationError, KVCache } from '../src/index.js';
import { attendedKeys, KEY_BLOCK } from '../src/shared/forward-layout.js';
import { gpt2Config, llamaConfig } from './checkpoints.js';
import { relativeError } from '@dorajs/backend-conformance';
import { cpu } from './helpers.js';

type Json = Readonly<Record<string, unknown>>;

const MODELS: readonly [string, Json][] = [
  ['llama (GQA, untied)', llamaConfig()],
  ['llama (MHA, tied, bias)', llamaConfig({ num_key_value_heads: 4, tie_word_embeddings: true, attention_bias: true })],
  ['gpt2', gpt2Config()],
];

function build(config: Json, backend: Backend, seed = 7): CausalLM {
  return createModel(config, { backend, random: new Random(seed) }).eval() as CausalLM;
}

function ids(rows: readonly (readonly number[])[], backend: Backend): Tensor {
  return tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], { backend, dtype: 'int32' });
}

/** Row `b`, positions [from, to) of logits [batch, seq, vocab]. */
function rows(values: Float32Array, shape: readonly number[], b: number, from: number, to: number): Float32Array {
  const [, seq, vocab] = shape as [number, number, number];
  return values.slice((b * seq + from) * vocab, (b * seq + to) * vocab);
}

async function logitsOf(model: CausalLM, input: Tensor, options: Parameters<CausalLM['forward']>[1] = {}): Promise<Float32Array> {
  const out = tidy(() => noGrad(() => model.forward(input, options)));
  const values = await out.float32();
  out.dispose();
  return values;
}

const SEQS = [
  [3, 17, 0, 9, 9, 12, 5, 1, 8, 2],
  [19, 1, 4, 4, 15, 2, 11, 6, 0, 13],
];

// 10 positions fill a cache of 600 to less than half: attention then scores a prefix of KEY_BLOCK keys.
describe.each(MODELS)('%s', (_name, config) => {
  it.each([10, 600])('prefill + decode with a KV cache (capacity %i) equals the full forward at every step', async (capacity) => {
    const backend = cpu();
    const model = build(config, backend);
    const start = backend.liveBuffers();
    const all = ids(SEQS, backend);
    const full = await logitsOf(model, all);
    const shape = [2, 10, model.vocabSize];
    all.dispose();

    const cache = model.createCache(2, capacity);
    const prompt = ids(
      SEQS.map((s) => s.slice(0, 4)),
      backend,
    );
    const prefill = await logitsOf(model, prompt, { cache });
    prompt.dispose();
    expect(cache.length).toBe(4);
    for (const b of [0, 1])
      expect(relativeError(rows(prefill, [2, 4, model.vocabSize], b, 0, 4), rows(full, shape, b, 0, 4))).toBeLessThan(1e-5);
    for (let t = 4; t < 10; t++) {
      const step = ids(
        SEQS.map((s) => [s[t]!]),
        backend,
      );
      const got = await logitsOf(model, step, { cache });
      step.dispose();
      expect(cache.length).toBe(t + 1);
      for (const b of [0, 1])
        expect(relativeError(rows(got, [2, 1, model.vocabSize], b, 0, 1), rows(full, shape, b, t, t + 1))).toBeLessThan(1e-5);
    }
    cache.dispose();
    expect(backend.liveBuffers()).toBe(start);
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('logitsToKeep computes the head for the last positions only', async () => {
    const backend = cpu();
    const model = build(config, backend);
    const all = ids(SEQS, backend);
    const full = await logitsOf(model, all);
    const last = tidy(() => noGrad(() => model.forward(all, { logitsToKeep: 1 })));
    expect(last.shape).toEqual([2, 1, model.vocabSize]);
    const got = await last.float32();
    for (const b of [0, 1])
      expect(relativeError(rows(got, [2, 1, model.vocabSize], b, 0, 1), rows(full, [2, 10, model.vocabSize], b, 9, 10))).toBeLessThan(1e-5);
    last.dispose();
    all.dispose();
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it.each([0, 600])(
    'a left-padded batch gives each prompt its own logits, in prefill and in every decode step (capacity %i)',
    async (capacity) => {
      const backend = cpu();
      const model = build(config, backend);
      const prompts = [SEQS[0]!.slice(0, 3), SEQS[1]!.slice(0, 6)];
      const continuations = [
        [7, 2, 14, 0],
        [1, 1, 9, 3],
      ];
      // Each prompt alone, with its continuation, in one full forward.
      const alone = await Promise.all(
        prompts.map(async (p, b) => {
          const t = ids([[...p, ...continuations[b]!]], backend);
          const out = await logitsOf(model, t);
          t.dispose();
          return out;
        }),
      );
      const width = 6;
      const padded = prompts.map((p) => [...Array<number>(width - p.length).fill(0), ...p]);
      const mask = prompts.flatMap((p) => [...Array<number>(width - p.length).fill(0), ...Array<number>(p.length).fill(1)]);
      const vocab = model.vocabSize;

      // Without a cache: the padded batch with its mask.
      const batch = ids(padded, backend);
      const uncached = await logitsOf(model, batch, { attentionMask: mask });
      // With a cache: prefill, then the continuations one token at a time.
      const cache = model.createCache(2, capacity || width + 4);
      const prefill = await logitsOf(model, batch, { cache, attentionMask: mask, logitsToKeep: 1 });
      batch.dispose();
      prompts.forEach((p, b) => {
        const own = rows(alone[b]!, [1, p.length + 4, vocab], 0, 0, p.length);
        expect(relativeError(rows(uncached, [2, width, vocab], b, width - p.length, width), own)).toBeLessThan(1e-5);
        const lastAlone = rows(alone[b]!, [1, p.length + 4, vocab], 0, p.length - 1, p.length);
        expect(relativeError(rows(prefill, [2, 1, vocab], b, 0, 1), lastAlone)).toBeLessThan(1e-5);
      });
      for (let t = 0; t < 4; t++) {
        const step = ids(
          continuations.map((c) => [c[t]!]),
          backend,
        );
        const got = await logitsOf(model, step, { cache });
        step.dispose();
        prompts.forEach((p, b) => {
          const want = rows(alone[b]!, [1, p.length + 4, vocab], 0, p.length + t, p.length + t + 1);
          expect(relativeError(rows(got, [2, 1, vocab], b, 0, 1), want)).toBeLessThan(1e-5);
        });
      }
      cache.dispose();
      model.dispose();
      expect(backend.liveBuffers()).toBe(0);
    },
  );
});

describe('the attended prefix of a cache', () => {
  it('is whole KEY_BLOCKs while they fill at most half the capacity, else the capacity', () => {
    expect(KEY_BLOCK).toBe(256);
    expect(attendedKeys(10, 600)).toBe(256);
    expect(attendedKeys(256, 512)).toBe(256);
    expect(attendedKeys(257, 1024)).toBe(512);
    expect(attendedKeys(300, 600)).toBe(600);
    expect(attendedKeys(10, 96)).toBe(96);
  });
});

describe('bad calls fail before any work', () => {
  it('a full cache, a batch mismatch, a mask of the wrong size or values, a bad logitsToKeep', async () => {
    const backend = cpu();
    const model = build(llamaConfig(), backend);
    const cache = model.createCache(2, 4);
    const three = ids(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      backend,
    );
    await logitsOf(model, three, { cache });
    const live = backend.liveBuffers();
    const cases: [Tensor, Parameters<CausalLM['forward']>[1], RegExp][] = [
      [three, { cache }, /3 more positions do not fit the KV cache \(3 of 4 used\)/],
      [ids([[1]], backend), { cache }, /ids have batch 1, the KV cache 2/],
      [three, { attentionMask: [1, 1, 1] }, /attentionMask has 3 values for ids \[2, 3\]/],
      [three, { attentionMask: [1, 1, 1, 1, 2, 1] }, /attentionMask\[4\] is 2/],
      [three, { logitsToKeep: 4 }, /logitsToKeep must be an integer in \[1, 3\], got 4/],
    ];
    for (const [input, options, message] of cases) {
      const before = backend.liveBuffers();
      expect(() => tidy(() => model.forward(input, options))).toThrow(GenerationError);
      expect(() => tidy(() => model.forward(input, options))).toThrow(message);
      expect(backend.liveBuffers()).toBe(before);
    }
    expect(cache.length).toBe(3);
    expect(backend.liveBuffers()).toBe(live + 1);
    cache.dispose();
    model.dispose();
  });

  it('GPT-2 refuses positions beyond n_positions, also through a cache', async () => {
    const backend = cpu();
    const model = build(gpt2Config({ n_positions: 4 }), backend);
    const cache = model.createCache(1, 6);
    const four = ids([[1, 2, 3, 4]], backend);
    await logitsOf(model, four, { cache });
    const one = ids([[5]], backend);
    expect(() => tidy(() => model.forward(one, { cache }))).toThrow(/sequence of 5 tokens is longer than n_positions \(4\)/);
    expect(cache.length).toBe(4);
    for (const t of [four, one, cache, model]) t.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });
});

describe('ops.writeSlice', () => {
  const expected = (before: Float32Array, value: Float32Array): Float32Array => {
    // [2, 3, 4] target, [2, 1, 4] value at offset 2 along axis 1.
    const out = before.slice();
    for (let o = 0; o < 2; o++) out.set(value.subarray(o * 4, o * 4 + 4), o * 12 + 2 * 4);
    return out;
  };

  it('writes in place through the backend kernel, and rebuilds the buffer without one or while it is shared', async () => {
    const backend = cpu();
    // The same backend without its writeSlice kernel: core's slice + concat composite.
    const noKernel = Object.create(backend, { writeSlice: { value: undefined } }) as Backend;
    for (const be of [backend, noKernel]) {
      const before = Float32Array.from({ length: 24 }, (_, i) => i);
      const value = Float32Array.from({ length: 8 }, (_, i) => -1 - i);
      const init = tensor(before, [2, 3, 4], { backend: be });
      const target = new Parameter(init, false);
      init.dispose();
      const v = tensor(value, [2, 1, 4], { backend: be });
      ops.writeSlice(target, v, 1, 2);
      expect(target.version).toBe(1);
      expect(await target.float32()).toEqual(expected(before, value));
      // A view taken before a write keeps its values (copy on write).
      const view = ops.reshape(target, [24]);
      const snapshot = await view.float32();
      const doubled = ops.mulScalar(v, 2);
      ops.writeSlice(target, doubled, 1, 0);
      doubled.dispose();
      expect(await view.float32()).toEqual(snapshot);
      expect(Array.from((await target.float32()).subarray(0, 4))).toEqual([-2, -4, -6, -8]);
      expect(() => ops.writeSlice(target, v, 1, 3)).toThrow(/writeSlice: \[2, 1, 4\] float32 does not fit \[2, 3, 4\] float32 at offset 3/);
      for (const t of [view, v, target]) t.dispose();
    }
    expect(backend.liveBuffers()).toBe(0);
  });

  it('a KV cache that cannot be allocated frees what it took', () => {
    const backend = cpu();
    let left = 3;
    // Fails the fourth allocation, as a backend with a memory cap would.
    const capped = Object.create(backend, {
      fill: {
        value: (shape: readonly number[], value: number, dtype: 'float32') => {
          if (left-- <= 0) throw new Error('out of memory');
          return backend.fill(shape, value, dtype);
        },
      },
    }) as Backend;
    expect(() => new KVCache({ numLayers: 2, numKeyValueHeads: 1, headDim: 4, batch: 1, capacity: 8, backend: capped })).toThrow(
      /out of memory/,
    );
    expect(backend.liveBuffers()).toBe(0);
    const z = zeros([1], { backend });
    z.dispose();
  });
});
