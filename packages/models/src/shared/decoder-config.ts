/**
 * The parsed config of the Llama-like decoders (Llama, Qwen2/2.5, Qwen3, Mistral, Phi-3, Gemma 2): one
 * shape for all of them, so one implementation (llama/llama-model.ts) runs every family and each family
 * only says how its config.json maps onto it — as transformers' modular files derive them from Llama.
 */
import { preview } from '@dorajs/core';
import type { ConfigFields } from '../config/config-fields.js';
import { readActivation } from './activations.js';
import { parseRope, type RopeConfig } from './rope-scaling.js';

export const LAYER_TYPES = ['full_attention', 'sliding_attention'] as const;
export type LayerType = (typeof LAYER_TYPES)[number];

export interface DecoderConfig {
  readonly modelType: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly hiddenAct: string;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  readonly rope: RopeConfig;
  readonly tieWordEmbeddings: boolean;
  readonly attentionDropout: number;
  /** Biases on q_proj, k_proj, v_proj (Llama/Qwen3/Gemma 2 `attention_bias`; always on Qwen2). */
  readonly qkvBias: boolean;
  /** Bias on o_proj. */
  readonly oBias: boolean;
  /** Biases on the MLP projections (Llama `mlp_bias`). */
  readonly mlpBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3's q_norm / k_norm). */
  readonly qkNorm: boolean;
  /** Attention kind of each layer. */
  readonly layerTypes: readonly LayerType[];
  /** How many keys a sliding layer sees, itself included; null when no layer slides. */
  readonly slidingWindow: number | null;
  /** Multiplies q·kᵀ: head_dim^−½, or Gemma 2's query_pre_attn_scalar^−½. */
  readonly attentionScale: number;
  /** Gemma 2: scores ← cap·tanh(scores / cap) before the mask. */
  readonly attnLogitSoftcapping: number | null;
  /** Gemma 2: logits ← cap·tanh(logits / cap). */
  readonly finalLogitSoftcapping: number | null;
  /** Gemma 2: embeddings × √hidden_size, RMSNorm × (1 + weight), norms after attention and MLP too. */
  readonly gemmaNorms: boolean;
}

/** transformers' defaults of one family's config class. */
export interface DecoderDefaults {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  /** undefined: one per attention head. */
  readonly numKeyValueHeads?: number;
  /** undefined: hidden_size / num_attention_heads. */
  readonly headDim?: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  readonly tieWordEmbeddings: boolean;
  readonly ropeTheta?: number;
  /** The config field naming the activation (Gemma 2: hidden_activation). */
  readonly activationField?: string;
  readonly activation?: string;
  /** Rotating part of each head is honoured (Phi-3). */
  readonly partialRotary?: boolean;
  /** Default of a top-level original_max_position_embeddings that feeds longrope (Phi-3 only). */
  readonly topLevelOriginal?: number;
}

/** The fields every family reads the same way; the family-specific ones start at their plain values. */
export function parseDecoderConfig(f: ConfigFields, modelType: string, d: DecoderDefaults): DecoderConfig {
  const hiddenSize = f.size('hidden_size', d.hiddenSize);
  const numAttentionHeads = f.size('num_attention_heads', d.numAttentionHeads);
  const numKeyValueHeads = f.size('num_key_value_heads', d.numKeyValueHeads ?? numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    f.reject('num_key_value_heads', `(${numKeyValueHeads}) must divide num_attention_heads (${numAttentionHeads})`);
  }
  if (!f.has('head_dim') && d.headDim === undefined && hiddenSize % numAttentionHeads !== 0) {
    f.reject('hidden_size', `(${hiddenSize}) is not divisible by num_attention_heads (${numAttentionHeads}) and no head_dim is given`);
  }
  const headDim = f.size('head_dim', d.headDim ?? hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0 && !d.partialRotary) f.reject('head_dim', `must be even for rotary embeddings, got ${headDim}`);
  const maxPositionEmbeddings = f.size('max_position_embeddings', d.maxPositionEmbeddings);
  const numHiddenLayers = layerCount(f, 'num_hidden_layers', d.numHiddenLayers);
  return {
    modelType,
    vocabSize: f.size('vocab_size', d.vocabSize),
    hiddenSize,
    intermediateSize: f.size('intermediate_size', d.intermediateSize),
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    hiddenAct: readActivation(f, d.activationField ?? 'hidden_act', d.activation ?? 'silu'),
    rmsNormEps: f.number('rms_norm_eps', d.rmsNormEps),
    maxPositionEmbeddings,
    rope: parseRope(f, {
      headDim,
      maxPositionEmbeddings,
      defaultTheta: d.ropeTheta ?? 10000,
      partialRotary: d.partialRotary ?? false,
      topLevelOriginal: d.topLevelOriginal,
    }),
    tieWordEmbeddings: f.boolean('tie_word_embeddings', d.tieWordEmbeddings),
    attentionDropout: f.probability('attention_dropout', 0),
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    layerTypes: Array.from({ length: numHiddenLayers }, () => 'full_attention'),
    slidingWindow: null,
    attentionScale: headDim ** -0.5,
    attnLogitSoftcapping: null,
    finalLogitSoftcapping: null,
    gemmaNorms: false,
  };
}

/**
 * Most decoder layers a config.json may declare. Parsing builds per-layer lists (layer types), so a count
 * of 2³¹−1 would exhaust memory before the loader could compare the model with its checkpoint; real models
 * have at most a few hundred layers.
 */
export const MAX_LAYERS = 1_000_000;

/** A layer count (`num_hidden_layers`), at most MAX_LAYERS. */
function layerCount(f: ConfigFields, field: string, fallback: number | undefined): number {
  const layers = f.size(field, fallback);
  if (layers > MAX_LAYERS) f.reject(field, `is ${layers}, over the limit of ${MAX_LAYERS} layers`);
  return layers;
}

/**
 * Sliding-window layout: `layer_types` when config.json lists it, else `fallback(layerIndex)`. A sliding
 * layer needs a window; `window` is the already-resolved sliding_window (null when off).
 */
export function readLayerTypes(
  f: ConfigFields,
  layers: number,
  window: number | null,
  fallback: (layer: number) => LayerType,
): { layerTypes: LayerType[]; slidingWindow: number | null } {
  if (layers > MAX_LAYERS) f.reject('num_hidden_layers', `is ${layers}, over the limit of ${MAX_LAYERS} layers`);
  let layerTypes: LayerType[];
  if (f.has('layer_types')) {
    const v = f.json['layer_types'];
    if (!Array.isArray(v) || v.length !== layers || !v.every((t) => (LAYER_TYPES as readonly unknown[]).includes(t))) {
      f.reject('layer_types', `must list ${layers} of ${LAYER_TYPES.join(' / ')}, got ${preview(v)}`);
    }
    layerTypes = v as LayerType[];
  } else {
    layerTypes = Array.from({ length: layers }, (_, i) => fallback(i));
  }
  const sliding = layerTypes.includes('sliding_attention');
  if (sliding && window === null) f.reject('sliding_window', 'must be set (and enabled) when a layer is sliding_attention');
  return { layerTypes, slidingWindow: sliding ? window : null };
}

/** A positive integer window, or null when the field is null or absent and the default is null. */
export function readWindow(f: ConfigFields, fallback: number | null): number | null {
  if (!f.has('sliding_window')) return f.json['sliding_window'] === null ? null : fallback;
  return f.size('sliding_window');
}

/** An optional positive number (null or absent: off). */
export function readCap(f: ConfigFields, field: string, fallback: number | null): number | null {
  if (!f.has(field)) return f.json[field] === null ? null : fallback;
  const v = f.number(field);
  if (v <= 0) f.reject(field, `must be positive (or null), got ${v}`);
  return v;
}

/**
 * Qwen2/Qwen3: `use_sliding_window` switches sliding_window on, and then layers from max_window_layers on
 * slide (transformers' Qwen2Config / Qwen3Config).
 */
export function readQwenWindows(f: ConfigFields, layers: number): { layerTypes: LayerType[]; slidingWindow: number | null } {
  const window = f.boolean('use_sliding_window', false) ? readWindow(f, 4096) : null;
  const first = f.size('max_window_layers', 28);
  return readLayerTypes(f, layers, window, (i) => (window !== null && i >= first ? 'sliding_attention' : 'full_attention'));
}
