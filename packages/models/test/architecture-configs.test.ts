/**
 * config.json → architecture, for the Llama-like families: every RoPE form transformers reads, each family's
 * defaults and switches, PyTorch parameter names, and one typed error naming file and field for everything
 * that would change the math and is not implemented.
 */
import { describe, expect, it } from 'vitest';
import {
  createModel,
  ModelConfigError,
  parseGemma2Config,
  parseLlamaConfig,
  parseMistralConfig,
  parsePhi3Config,
  parseQwen2Config,
  parseQwen3Config,
  ropeFrequencies,
  UnsupportedRopeError,
} from '../src/index.js';
import { llamaConfig } from './checkpoints.js';
import { cpu, thrown } from './helpers.js';

type Json = Readonly<Record<string, unknown>>;

const LLAMA3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };

describe('RoPE sections', () => {
  it.each<[string, Json]>([
    ['rope_parameters (transformers 5)', { rope_parameters: { ...LLAMA3, rope_theta: 500000 } }],
    ['legacy rope_scaling with rope_type', { rope_parameters: undefined, rope_theta: 500000, rope_scaling: LLAMA3 }],
    [
      'legacy rope_scaling with type',
      { rope_parameters: undefined, rope_theta: 500000, rope_scaling: { ...LLAMA3, rope_type: undefined, type: 'llama3' } },
    ],
  ])('reads llama3 from %s', (_, overrides) => {
    const { rope } = parseLlamaConfig(llamaConfig(overrides));
    expect(rope).toMatchObject({
      ropeType: 'llama3',
      theta: 500000,
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 64,
    });
  });

  it('computes llama3 frequencies band by band (high kept, low divided by factor, medium smoothed)', () => {
    const { rope } = parseLlamaConfig(llamaConfig({ head_dim: 16, rope_parameters: { ...LLAMA3, rope_theta: 10000 } }));
    const plain = Array.from({ length: 8 }, (_, i) => 1 / 10000 ** ((2 * i) / 16));
    const { invFreq } = ropeFrequencies(rope, 1);
    expect(invFreq[0]).toBeCloseTo(plain[0]!, 6); // wavelength 6.3 < 16: unchanged
    expect(invFreq[7]! / plain[7]!).toBeCloseTo(1 / 8, 6); // wavelength ≫ 64: ÷ factor
    const smooth = (64 / ((2 * Math.PI) / plain[1]!) - 1) / 3;
    expect(invFreq[1]! / plain[1]!).toBeCloseTo((1 - smooth) / 8 + smooth, 5);
  });

  it('dynamic NTK frequencies depend on the length reached; default and yarn do not', () => {
    const { rope } = parseLlamaConfig(llamaConfig({ max_position_embeddings: 8, rope_parameters: { rope_type: 'dynamic', factor: 2 } }));
    expect(Array.from(ropeFrequencies(rope, 4).invFreq)).toEqual(Array.from(ropeFrequencies(rope, 8).invFreq));
    expect(ropeFrequencies(rope, 20).invFreq[1]!).toBeLessThan(ropeFrequencies(rope, 8).invFreq[1]!);
  });

  it('yarn: the factor as given, attention factor 0.1·ln(factor) + 1, or mscale / mscale_all_dim', () => {
    const yarn = (extra: Json) =>
      parseLlamaConfig(
        llamaConfig({
          max_position_embeddings: 64,
          rope_parameters: { rope_type: 'yarn', factor: 2, original_max_position_embeddings: 16, ...extra },
        }),
      ).rope;
    expect(yarn({})).toMatchObject({ factor: 2, originalMaxPositionEmbeddings: 16 });
    expect(yarn({}).attentionFactor).toBeCloseTo(0.1 * Math.log(2) + 1, 12);
    expect(yarn({ mscale: 2, mscale_all_dim: 1 }).attentionFactor).toBeCloseTo((0.2 * Math.log(2) + 1) / (0.1 * Math.log(2) + 1), 12);
    expect(yarn({ attention_factor: 0.5 }).attentionFactor).toBe(0.5);
  });

  it.each<[string, Json, string]>([
    [
      'an unknown key that would change the math',
      { rope_parameters: { rope_type: 'default', mrope_section: [1, 1] } },
      'rope_parameters.mrope_section',
    ],
    [
      'a key of another type',
      { rope_parameters: { rope_type: 'linear', factor: 2, low_freq_factor: 1 } },
      'rope_parameters.low_freq_factor',
    ],
    ['llama3 without low_freq_factor', { rope_parameters: { ...LLAMA3, low_freq_factor: undefined } }, 'rope_parameters.low_freq_factor'],
    ['llama3 bands the wrong way round', { rope_parameters: { ...LLAMA3, high_freq_factor: 0.5 } }, 'rope_parameters.high_freq_factor'],
    ['linear without factor', { rope_parameters: undefined, rope_scaling: { type: 'linear' } }, 'rope_scaling.factor'],
    ['a factor below 1', { rope_parameters: { rope_type: 'dynamic', factor: 0.5 } }, 'rope_parameters.factor'],
    ['rope_theta ≤ 1', { rope_parameters: { rope_type: 'default', rope_theta: 0 } }, 'rope_parameters.rope_theta'],
    ['partial rotary on Llama', { partial_rotary_factor: 0.5 }, 'partial_rotary_factor'],
    [
      'rope_parameters and rope_scaling that disagree',
      { rope_parameters: { rope_type: 'default' }, rope_scaling: { type: 'linear', factor: 2 } },
      'rope_scaling',
    ],
  ])('refuses %s, naming the field', (_, overrides, field) => {
    const error = thrown(() => parseLlamaConfig(llamaConfig(overrides), '/m/config.json'));
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(error).toMatchObject({ field, file: '/m/config.json' });
    expect(error.message.split('\n')).toHaveLength(1);
  });

  it('refuses an unknown rope type with UnsupportedRopeError listing what is supported', () => {
    const error = thrown(() => parseLlamaConfig(llamaConfig({ rope_parameters: { rope_type: 'mrope' } })));
    expect(error).toBeInstanceOf(UnsupportedRopeError);
    expect(error.message).toContain('default, linear, dynamic, yarn, longrope, llama3');
  });
});

const TINY = {
  vocab_size: 20,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

describe('family configs', () => {
  it('Qwen2: q/k/v biases, no o_proj bias; use_sliding_window slides the layers from max_window_layers on', () => {
    const c = parseQwen2Config({ ...TINY, use_sliding_window: true, sliding_window: 5, max_window_layers: 2 });
    expect(c).toMatchObject({ qkvBias: true, oBias: false, slidingWindow: 5 });
    expect(c.layerTypes).toEqual(['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention']);
    expect(parseQwen2Config({ ...TINY, sliding_window: 5 })).toMatchObject({ slidingWindow: null });
  });

  it('Qwen3: q/k norms, head_dim 128 by default, attention_bias on all four projections', () => {
    expect(parseQwen3Config({ ...TINY })).toMatchObject({ qkNorm: true, headDim: 128, qkvBias: false });
    expect(parseQwen3Config({ ...TINY, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true });
  });

  it('Mistral: a 4096-position window on every layer by default, none when sliding_window is null', () => {
    expect(parseMistralConfig({ ...TINY })).toMatchObject({ slidingWindow: 4096 });
    expect(parseMistralConfig({ ...TINY }).layerTypes.every((t) => t === 'sliding_attention')).toBe(true);
    expect(parseMistralConfig({ ...TINY, sliding_window: null })).toMatchObject({ slidingWindow: null });
  });

  it('Phi-3: longrope with the top-level original_max_position_embeddings; partial rotary honoured', () => {
    const c = parsePhi3Config({
      ...TINY,
      head_dim: 8,
      partial_rotary_factor: 0.5,
      max_position_embeddings: 128,
      original_max_position_embeddings: 32,
      rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [3, 4] },
    });
    expect(c.rope).toMatchObject({ ropeType: 'longrope', dim: 4, originalMaxPositionEmbeddings: 32, factor: 4 });
    expect(c.rope.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(4) / Math.log(32)), 12);
    const error = thrown(() =>
      parsePhi3Config({ ...TINY, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1] } }, 'p.json'),
    );
    expect(error).toMatchObject({ field: 'rope_scaling.short_factor', file: 'p.json' });
  });

  it('Gemma 2: alternating windows (layer 0 slides), soft-caps, query_pre_attn_scalar, GELU-tanh, tied head', () => {
    const c = parseGemma2Config({ ...TINY, head_dim: 8, query_pre_attn_scalar: 64 });
    expect(c.layerTypes).toEqual(['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention']);
    expect(c).toMatchObject({
      slidingWindow: 4096,
      attnLogitSoftcapping: 50,
      finalLogitSoftcapping: 30,
      attentionScale: 1 / 8,
      hiddenAct: 'gelu_pytorch_tanh',
      tieWordEmbeddings: true,
      gemmaNorms: true,
    });
    expect(parseGemma2Config({ ...TINY, final_logit_softcapping: null })).toMatchObject({ finalLogitSoftcapping: null });
  });

  it.each<[string, (json: Json, file: string) => unknown, Json, string]>([
    ['a layer_types list of the wrong length', parseQwen2Config, { layer_types: ['full_attention'] }, 'layer_types'],
    [
      'an unknown layer type',
      parseGemma2Config,
      { layer_types: ['full_attention', 'chunked', 'full_attention', 'full_attention'] },
      'layer_types',
    ],
    [
      'a sliding layer with the window off',
      parseQwen3Config,
      { use_sliding_window: false, layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'full_attention'] },
      'sliding_window',
    ],
    ['a non-positive soft-cap', parseGemma2Config, { attn_logit_softcapping: -1 }, 'attn_logit_softcapping'],
    ['a window of 0', parseMistralConfig, { sliding_window: 0 }, 'sliding_window'],
    ['partial rotary on Qwen2', parseQwen2Config, { partial_rotary_factor: 0.5 }, 'partial_rotary_factor'],
  ])('refuses %s, naming the field', (_, parse, overrides, field) => {
    const error = thrown(() => parse({ ...TINY, ...overrides }, 'c.json'));
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(error).toMatchObject({ field, file: 'c.json' });
  });
});

describe('PyTorch parameter names', () => {
  const names = (json: Json): string[] => {
    const model = createModel(json, { backend: cpu() });
    const out = [...model.stateDict().keys()].filter((k) => k.startsWith('model.layers.0.'));
    model.dispose();
    return out.map((k) => k.slice('model.layers.0.'.length));
  };

  it.each<[string, Json, string[]]>([
    [
      'qwen2',
      { model_type: 'qwen2', ...TINY },
      [
        'self_attn.q_proj.weight',
        'self_attn.q_proj.bias',
        'self_attn.k_proj.weight',
        'self_attn.k_proj.bias',
        'self_attn.v_proj.weight',
        'self_attn.v_proj.bias',
        'self_attn.o_proj.weight',
        'mlp.gate_proj.weight',
        'mlp.up_proj.weight',
        'mlp.down_proj.weight',
        'input_layernorm.weight',
        'post_attention_layernorm.weight',
      ],
    ],
    [
      'qwen3',
      { model_type: 'qwen3', ...TINY, head_dim: 4 },
      [
        'self_attn.q_proj.weight',
        'self_attn.k_proj.weight',
        'self_attn.v_proj.weight',
        'self_attn.o_proj.weight',
        'self_attn.q_norm.weight',
        'self_attn.k_norm.weight',
        'mlp.gate_proj.weight',
        'mlp.up_proj.weight',
        'mlp.down_proj.weight',
        'input_layernorm.weight',
        'post_attention_layernorm.weight',
      ],
    ],
    [
      'phi3',
      { model_type: 'phi3', ...TINY },
      [
        'self_attn.qkv_proj.weight',
        'self_attn.o_proj.weight',
        'mlp.gate_up_proj.weight',
        'mlp.down_proj.weight',
        'input_layernorm.weight',
        'post_attention_layernorm.weight',
      ],
    ],
    [
      'gemma2',
      { model_type: 'gemma2', ...TINY, head_dim: 4 },
      [
        'self_attn.q_proj.weight',
        'self_attn.k_proj.weight',
        'self_attn.v_proj.weight',
        'self_attn.o_proj.weight',
        'mlp.gate_proj.weight',
        'mlp.up_proj.weight',
        'mlp.down_proj.weight',
        'input_layernorm.weight',
        'post_attention_layernorm.weight',
        'pre_feedforward_layernorm.weight',
        'post_feedforward_layernorm.weight',
      ],
    ],
  ])('%s', (_, json, expected) => {
    expect(names(json)).toEqual(expected);
  });

  it('Phi-3 fuses q, k, v (heads + 2·kv heads) and gate, up (2·intermediate)', () => {
    const model = createModel({ model_type: 'phi3', ...TINY }, { backend: cpu() });
    const state = model.stateDict();
    expect(state.get('model.layers.0.self_attn.qkv_proj.weight')!.shape).toEqual([(4 + 2 * 2) * 4, 16]);
    expect(state.get('model.layers.0.mlp.gate_up_proj.weight')!.shape).toEqual([48, 16]);
    model.dispose();
  });
});
