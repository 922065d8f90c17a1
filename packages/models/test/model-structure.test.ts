/** Module trees and parameter names as PyTorch has them, so PEFT adapters and optimizers line up. */
import { Conv1D, Dropout, Embedding, Linear, noGrad, tensor, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { createModel, type GPT2LMHeadModel, type LlamaForCausalLM, TokenIdsError, tokenIds } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig } from './checkpoints.js';
import { baseDir, cpu } from './helpers.js';

describe('parameter names', () => {
  it("Llama's named parameters follow PyTorch's order and names", async () => {
    const { model, checkpoint } = await loadModel(baseDir('llama'), { backend: cpu() });
    const names = model.namedParameters().map(([n]) => n);
    expect(names.slice(0, 10)).toEqual([
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
      'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.mlp.gate_proj.weight',
      'model.layers.0.mlp.up_proj.weight',
      'model.layers.0.mlp.down_proj.weight',
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.post_attention_layernorm.weight',
    ]);
    expect(names.slice(-2)).toEqual(['model.norm.weight', 'lm_head.weight']);
    expect(new Set(model.stateDict().keys())).toEqual(new Set(checkpoint.tensors.map((t) => t.key)));
    expect(checkpoint.tensors.every((t) => t.parameter === t.key)).toBe(true);
    model.dispose();
  });

  it("GPT-2's lm_head is transformer.wte's Parameter; the checkpoint omits it", async () => {
    const { model, checkpoint } = await loadModel(baseDir('gpt2'), { backend: cpu() });
    const sd = model.stateDict();
    expect(sd.get('lm_head.weight')).toBe(sd.get('transformer.wte.weight'));
    expect(new Set(sd.keys())).toEqual(new Set([...checkpoint.tensors.map((t) => t.key), 'lm_head.weight']));
    const names = model.namedParameters().map(([n]) => n);
    expect(names).not.toContain('lm_head.weight');
    expect(names.slice(0, 8)).toEqual([
      'transformer.wte.weight',
      'transformer.wpe.weight',
      'transformer.h.0.ln_1.weight',
      'transformer.h.0.ln_1.bias',
      'transformer.h.0.attn.c_attn.weight',
      'transformer.h.0.attn.c_attn.bias',
      'transformer.h.0.attn.c_proj.weight',
      'transformer.h.0.attn.c_proj.bias',
    ]);
    model.dispose();
  });

  it('exposes the layer types PEFT targets at their PyTorch paths', () => {
    const backend = cpu();
    const llama = createModel(llamaConfig(), { backend });
    expect(llama.getSubmodule('model.layers.1.self_attn.q_proj')).toBeInstanceOf(Linear);
    expect(llama.getSubmodule('model.layers.1.mlp.down_proj')).toBeInstanceOf(Linear);
    expect(llama.getSubmodule('model.embed_tokens')).toBeInstanceOf(Embedding);
    const gpt2 = createModel(gpt2Config(), { backend });
    expect(gpt2.getSubmodule('transformer.h.0.attn.c_attn')).toBeInstanceOf(Conv1D);
    expect(gpt2.getSubmodule('transformer.h.1.mlp.c_fc')).toBeInstanceOf(Conv1D);
    expect((gpt2.getSubmodule('transformer.h.0.attn.c_attn') as Conv1D).weight.shape).toEqual([12, 36]);
    llama.dispose();
    gpt2.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('ties or unties the Llama head from tie_word_embeddings', () => {
    const backend = cpu();
    const tied = createModel(llamaConfig({ tie_word_embeddings: true }), { backend }) as LlamaForCausalLM;
    expect((tied.lm_head as Linear).weight).toBe((tied.model.embed_tokens as Embedding).weight);
    const untied = createModel(llamaConfig(), { backend }) as LlamaForCausalLM;
    expect((untied.lm_head as Linear).weight).not.toBe((untied.model.embed_tokens as Embedding).weight);
    tied.dispose();
    untied.dispose();
    // Construction outside tidy leaves no buffer behind once the model is disposed (the untied-away head too).
    expect(backend.liveBuffers()).toBe(0);
  });
});

describe('forward', () => {
  it('is causal: a later token never changes earlier logits', async () => {
    const backend = cpu();
    for (const config of [llamaConfig(), gpt2Config()]) {
      const model = createModel(config, { backend }).eval();
      const run = async (ids: number[][]) => {
        const t = tokenIds(ids, { vocabSize: 20, backend });
        const out = tidy(() => noGrad(() => model.forward(t)));
        t.dispose();
        const values = await out.float32();
        out.dispose();
        return values;
      };
      const a = await run([[1, 2, 3, 4, 5]]);
      const b = await run([[1, 2, 3, 4, 17]]);
      expect(Array.from(b.subarray(0, 4 * 20))).toEqual(Array.from(a.subarray(0, 4 * 20)));
      expect(b.subarray(4 * 20)).not.toEqual(a.subarray(4 * 20));
      model.dispose();
    }
    expect(backend.liveBuffers()).toBe(0);
  });

  it.each([
    ['gpt2', gpt2Config()],
    ['llama with attention_dropout', llamaConfig({ attention_dropout: 0.5 })],
  ])('%s: dropout is active in train mode only', async (_, config) => {
    const backend = cpu();
    const model = createModel(config, { backend });
    const ids = tokenIds([[1, 2, 3, 4, 5]], { vocabSize: 20, backend });
    const run = async () => {
      const out = tidy(() => noGrad(() => model.forward(ids)));
      const values = Array.from(await out.float32());
      out.dispose();
      return values;
    };
    model.train();
    expect(await run()).not.toEqual(await run());
    model.eval();
    expect(await run()).toEqual(await run());
    ids.dispose();
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('train() and eval() reach every GPT-2 dropout module', () => {
    const model = createModel(gpt2Config(), { backend: cpu() }) as GPT2LMHeadModel;
    const dropouts = model.namedModules().filter(([, m]) => m instanceof Dropout);
    expect(dropouts.map(([n]) => n)).toEqual(
      expect.arrayContaining(['transformer.drop', 'transformer.h.1.attn.attn_dropout', 'transformer.h.1.mlp.dropout']),
    );
    model.eval();
    expect(dropouts.every(([, m]) => !m.training)).toBe(true);
    model.train();
    expect(dropouts.every(([, m]) => m.training)).toBe(true);
    model.dispose();
  });

  it('refuses ids that are not int32 [batch, seq], naming the model', () => {
    const backend = cpu();
    const model = createModel(llamaConfig(), { backend });
    const floats = tensor([[1, 2]], undefined, { backend });
    const flat = tensor(new Int32Array([1, 2]), [2], { backend });
    expect(() => model.forward(floats)).toThrow(/LlamaForCausalLM\.forward: ids must be int32, got float32/);
    expect(() => model.forward(flat)).toThrow(TokenIdsError);
    floats.dispose();
    flat.dispose();
    model.dispose();
  });

  it('refuses a GPT-2 sequence longer than n_positions', () => {
    const backend = cpu();
    const model = createModel(gpt2Config({ n_positions: 4 }), { backend });
    const ids = tokenIds([[1, 2, 3, 4, 5]], { vocabSize: 20, backend });
    expect(() => tidy(() => model.forward(ids))).toThrow(/sequence of 5 tokens is longer than n_positions \(4\)/);
    ids.dispose();
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });
});
