/** config.json parsing: transformers' defaults, and a typed error naming file and field otherwise. */
import { describe, expect, it } from 'vitest';
import {
  createModel,
  ModelConfigError,
  parseGPT2Config,
  parseLlamaConfig,
  UnsupportedActivationError,
  UnsupportedModelError,
  UnsupportedRopeError,
} from '../src/index.js';
import { gpt2Config, llamaConfig } from './checkpoints.js';
import { thrown } from './helpers.js';

describe('parseLlamaConfig', () => {
  it('reads rope_parameters in the rope_type: default form', () => {
    const c = parseLlamaConfig(llamaConfig({ rope_parameters: { rope_type: 'default', rope_theta: 500000 } }));
    expect(c.rope.theta).toBe(500000);
  });

  it('reads a legacy top-level rope_theta, and defaults to 10000', () => {
    expect(parseLlamaConfig(llamaConfig({ rope_parameters: undefined, rope_theta: 123 })).rope.theta).toBe(123);
    expect(parseLlamaConfig(llamaConfig({ rope_parameters: undefined })).rope.theta).toBe(10000);
  });

  it.each([
    [{ rope_parameters: { rope_type: 'mrope', rope_theta: 500000 } }, 'mrope', 'rope_parameters.rope_type'],
    [{ rope_parameters: undefined, rope_scaling: { type: 'ntk-by-parts', factor: 2 } }, 'ntk-by-parts', 'rope_scaling.type'],
  ])('refuses RoPE types it does not implement, naming the type and field (%#)', (overrides, ropeType, field) => {
    const error = thrown(() => parseLlamaConfig(llamaConfig(overrides), '/m/config.json'));
    expect(error).toBeInstanceOf(UnsupportedRopeError);
    expect(error).toMatchObject({ ropeType, field, file: '/m/config.json' });
    expect((error as Error).message).toContain(`'${ropeType}'`);
    expect((error as Error).message).toContain('llama3');
    expect((error as Error).message).toContain('/m/config.json');
  });

  it('takes head_dim from the config, else hidden_size / num_attention_heads', () => {
    expect(parseLlamaConfig(llamaConfig({ head_dim: 32 })).headDim).toBe(32);
    expect(parseLlamaConfig(llamaConfig()).headDim).toBe(4);
  });

  it('defaults num_key_value_heads to num_attention_heads', () => {
    expect(parseLlamaConfig(llamaConfig({ num_key_value_heads: undefined })).numKeyValueHeads).toBe(4);
  });

  it.each([
    [{ num_key_value_heads: 3 }, 'num_key_value_heads'],
    [{ vocab_size: 'many' }, 'vocab_size'],
    [{ hidden_size: 0 }, 'hidden_size'],
    [{ hidden_size: 18, head_dim: undefined }, 'hidden_size'],
    [{ head_dim: 5 }, 'head_dim'],
    [{ tie_word_embeddings: 'yes' }, 'tie_word_embeddings'],
    [{ rms_norm_eps: 'small' }, 'rms_norm_eps'],
  ])('names the bad field (%o)', (overrides, field) => {
    const error = thrown(() => parseLlamaConfig(llamaConfig(overrides), 'cfg.json'));
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(error).toMatchObject({ field, file: 'cfg.json' });
  });

  it('refuses an unknown hidden_act, naming it', () => {
    const error = thrown(() => parseLlamaConfig(llamaConfig({ hidden_act: 'quick_gelu' })));
    expect(error).toBeInstanceOf(UnsupportedActivationError);
    expect((error as Error).message).toContain("'quick_gelu'");
  });
});

describe('parseGPT2Config', () => {
  it('n_inner null means 4·n_embd', () => {
    expect(parseGPT2Config(gpt2Config({ n_inner: null })).nInner).toBe(48);
    expect(parseGPT2Config(gpt2Config({ n_inner: 10 })).nInner).toBe(10);
  });

  it("uses transformers' defaults for a sparse config", () => {
    const c = parseGPT2Config({ model_type: 'gpt2' });
    expect(c).toMatchObject({
      vocabSize: 50257,
      nPositions: 1024,
      nEmbd: 768,
      nLayer: 12,
      nHead: 12,
      nInner: 3072,
      activationFunction: 'gelu_new',
      layerNormEpsilon: 1e-5,
      scaleAttnWeights: true,
      scaleAttnByInverseLayerIdx: false,
      tieWordEmbeddings: true,
    });
  });

  it.each([
    [{ n_head: 5 }, 'n_embd'],
    [{ attn_pdrop: 1.5 }, 'attn_pdrop'],
    [{ add_cross_attention: true }, 'add_cross_attention'],
    [{ scale_attn_weights: 1 }, 'scale_attn_weights'],
  ])('names the bad field (%o)', (overrides, field) => {
    expect(thrown(() => parseGPT2Config(gpt2Config(overrides)))).toMatchObject({ field });
  });

  it('refuses an unknown activation_function, naming it and the field', () => {
    const error = thrown(() => parseGPT2Config(gpt2Config({ activation_function: 'gelu_fast' }), 'g.json'));
    expect(error).toBeInstanceOf(UnsupportedActivationError);
    expect(error).toMatchObject({ activation: 'gelu_fast', field: 'activation_function', file: 'g.json' });
  });
});

describe('createModel', () => {
  it('refuses an unsupported model_type, naming it and the file', () => {
    const error = thrown(() => createModel({ model_type: 'falcon' }, {}, '/x/config.json'));
    expect(error).toBeInstanceOf(UnsupportedModelError);
    expect(error).toMatchObject({ modelType: 'falcon', file: '/x/config.json' });
    expect((error as Error).message).toBe(
      "/x/config.json: unsupported model_type 'falcon' (supported: llama, qwen2, qwen3, mistral, phi3, gemma2, gpt2)",
    );
  });

  it('requires model_type', () => {
    expect(thrown(() => createModel({}, {}, 'c.json'))).toMatchObject({ field: 'model_type', file: 'c.json' });
  });
});
