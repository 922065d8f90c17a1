/**
 * Gradient checkpointing (`gradientCheckpointingEnable()`): a training step with it gives the same loss
 * and the same gradient for every parameter, bit for bit, as without it — dropout (GPT-2), padding masks,
 * sliding windows and tied embeddings included — and a forward keeps no layer's attention scores.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, backward, ops, Random, tensor, tidy } from '@dorajs/core';
import { type CausalLM, type CausalLMForwardOptions, createModel } from '@dorajs/models';
import { describe, expect, it } from 'vitest';
import { gpt2Config, llamaConfig } from './checkpoints.js';

type Json = Record<string, unknown>;

interface StepResult {
  loss: Uint32Array;
  grads: Map<string, Uint32Array>;
}

const bits = async (t: { float32(): Promise<Float32Array> }): Promise<Uint32Array> => new Uint32Array((await t.float32()).buffer.slice(0));

/** One step on a fresh model from `config` (same seed each time); returns the loss and every gradient as bits. */
async function step(backend: Backend, config: Json, checkpointing: boolean, attentionMask?: number[]): Promise<StepResult> {
  const model = createModel(config, { backend, random: new Random(7) }) as CausalLM;
  model.train();
  if (checkpointing) model.gradientCheckpointingEnable();
  expect(model.isGradientCheckpointing).toBe(checkpointing);
  const [batch, seq] = [2, 10];
  const ids = tensor(
    Int32Array.from({ length: batch * seq }, (_, i) => (i * 7 + 3) % 20),
    [batch, seq],
    { backend },
  );
  const options: CausalLMForwardOptions = attentionMask ? { attentionMask } : {};
  const loss = tidy(() => {
    const logits = model.forward(ids, options);
    const l = ops.mean(ops.mul(logits, logits));
    backward(l);
    return l;
  });
  const out: StepResult = { loss: await bits(loss), grads: new Map() };
  for (const [name, p] of model.namedParameters()) if (p.grad) out.grads.set(name, await bits(p.grad));
  loss.dispose();
  ids.dispose();
  model.dispose();
  return out;
}

function expectSameBits(a: StepResult, b: StepResult): void {
  expect([...b.loss]).toEqual([...a.loss]);
  expect([...b.grads.keys()]).toEqual([...a.grads.keys()]);
  for (const [name, g] of a.grads) {
    const other = b.grads.get(name)!;
    const at = g.findIndex((v, i) => v !== other[i]);
    expect(at, `${name} differs at ${at}`).toBe(-1);
  }
}

const padded = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, ...Array<number>(10).fill(1)];

describe('gradient checkpointing', () => {
  const cases: [string, Json, number[] | undefined][] = [
    ['llama (GQA, RoPE)', llamaConfig({ num_hidden_layers: 3 }), undefined],
    ['llama with a padding mask, tied embeddings', llamaConfig({ tie_word_embeddings: true }), padded],
    ['mistral (sliding window)', llamaConfig({ model_type: 'mistral', sliding_window: 4 }), undefined],
    ['gpt2 (dropout 0.1 everywhere)', gpt2Config({ n_layer: 3 }), undefined],
    ['gpt2 with a padding mask', gpt2Config(), padded],
  ];
  for (const [what, config, mask] of cases) {
    it(`${what}: loss and every gradient bit-identical to the plain step`, async () => {
      const backend = createCpuBackend();
      const start = backend.liveBuffers();
      const plain = await step(backend, config, false, mask);
      const ckpt = await step(backend, config, true, mask);
      expect(plain.grads.size).toBeGreaterThan(0);
      expectSameBits(plain, ckpt);
      expect(backend.liveBuffers()).toBe(start);
    });
  }

  it('a checkpointed forward keeps no attention scores (the plain one keeps one per layer)', () => {
    const backend = createCpuBackend();
    const [layers, heads, seq] = [3, 4, 12];
    const model = createModel(llamaConfig({ num_hidden_layers: layers, num_attention_heads: heads, hidden_size: 32 }), {
      backend,
      random: new Random(1),
    });
    model.train();
    const ids = tensor(
      Int32Array.from({ length: seq }, (_, i) => i % 20),
      [1, seq],
      { backend },
    );
    const liveAfterForward = (): number =>
      tidy(() => {
        const before = backend.liveBuffers();
        model.forward(ids);
        return backend.liveBuffers() - before;
      });
    const plain = liveAfterForward();
    model.gradientCheckpointingEnable();
    const ckpt = liveAfterForward();
    // Plain: every layer's saved activations; checkpointed: each layer's output and little else.
    expect(ckpt).toBeLessThan(plain / 3);
    model.gradientCheckpointingDisable();
    expect(model.isGradientCheckpointing).toBe(false);
    ids.dispose();
    model.dispose();
  });
});
