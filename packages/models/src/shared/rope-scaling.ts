/**
 * The RoPE variants of transformers' modeling_rope_utils.py — default, linear, dynamic (NTK), yarn,
 * longrope, llama3 — read from config.json (transformers 5's `rope_parameters`, or the legacy
 * `rope_scaling` whose type key was once `type`) and turned into inverse frequencies plus the attention
 * scaling that multiplies cos/sin. `dynamic` and `longrope` depend on the length of the sequence a forward
 * reaches, as transformers' `dynamic_rope_update` does: the frequencies of a call are those for
 * `max(position) + 1`, and keys already in a KV cache keep the rotation they were given.
 */
import type { ConfigFields } from '../config/config-fields.js';
import { preview } from '@dorajs/core';
import { UnsupportedRopeError } from '../errors.js';
import { ropeInverseFrequencies } from './rope.js';

export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

export interface RopeConfig {
  readonly ropeType: RopeType;
  /** rope_theta: the base of the frequencies. */
  readonly theta: number;
  /** Rotated dimensions of a head: head_dim · partial_rotary_factor (even). */
  readonly dim: number;
  /** max_position_embeddings of the model (dynamic, yarn and longrope read it). */
  readonly maxPositionEmbeddings: number;
  /** linear, dynamic, yarn, llama3: the context extension factor; longrope: the one the attention factor uses. */
  readonly factor: number;
  /** llama3, yarn, longrope: the context the model was pretrained with. */
  readonly originalMaxPositionEmbeddings: number;
  /** yarn, longrope: multiplies cos and sin (1 for the other types). */
  readonly attentionFactor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly betaFast: number;
  readonly betaSlow: number;
  readonly truncate: boolean;
  readonly shortFactor: readonly number[];
  readonly longFactor: readonly number[];
}

export interface RopeParseOptions {
  readonly headDim: number;
  readonly maxPositionEmbeddings: number;
  /** The architecture's rope_theta default. */
  readonly defaultTheta: number;
  /** Whether the architecture rotates part of each head (`partial_rotary_factor`, Phi-3); else a value ≠ 1 is refused. */
  readonly partialRotary: boolean;
  /**
   * Phi-3 keeps original_max_position_embeddings at the top level (default given here), and longrope
   * reads it from there; undefined for the other architectures.
   */
  readonly topLevelOriginal?: number;
}

/** Keys each type reads besides rope_type/type, rope_theta and partial_rotary_factor; any other key is refused. */
const KEYS: Readonly<Record<RopeType, readonly string[]>> = {
  default: [],
  linear: ['factor'],
  dynamic: ['factor'],
  yarn: [
    'factor',
    'attention_factor',
    'beta_fast',
    'beta_slow',
    'mscale',
    'mscale_all_dim',
    'original_max_position_embeddings',
    'truncate',
  ],
  longrope: ['short_factor', 'long_factor', 'factor', 'attention_factor', 'original_max_position_embeddings'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

/** Reads the RoPE section of a config; every value the math depends on is checked here, before any work. */
export function parseRope(f: ConfigFields, options: RopeParseOptions): RopeConfig {
  const params = f.object('rope_parameters');
  const legacy = f.object('rope_scaling');
  const section = params ?? legacy;
  const name = params ? 'rope_parameters' : 'rope_scaling';
  if (params && legacy && typeOf(legacy) !== typeOf(params)) {
    f.reject('rope_scaling', 'and rope_parameters are both given and disagree; keep one');
  }
  const typeField = section?.has('rope_type') ? 'rope_type' : section?.has('type') ? 'type' : null;
  const raw = section && typeField ? section.string(typeField) : 'default';
  // Phi-3's first checkpoints called longrope 'su' (transformers renames it on load).
  const ropeType = raw === 'su' ? 'longrope' : raw;
  if (!(ROPE_TYPES as readonly string[]).includes(ropeType)) {
    throw new UnsupportedRopeError(raw, f.file, `${name}.${typeField}`, ROPE_TYPES);
  }
  const type = ropeType as RopeType;
  if (section) {
    const allowed = new Set(['rope_type', 'type', 'rope_theta', 'partial_rotary_factor', ...KEYS[type]]);
    for (const key of Object.keys(section.json)) {
      if (!allowed.has(key) && section.json[key] !== null) {
        section.reject(key, `is not read by rope_type '${type}' here and would change the rotary embedding; refusing it`);
      }
    }
  }
  const theta = section?.has('rope_theta') ? section.number('rope_theta') : f.number('rope_theta', options.defaultTheta);
  if (theta <= 1) (section?.has('rope_theta') ? section : f).reject('rope_theta', `must be greater than 1, got ${theta}`);

  const partialHome = section?.has('partial_rotary_factor') ? section : f;
  const partial = partialHome.number('partial_rotary_factor', 1);
  if (partial !== 1 && !options.partialRotary)
    partialHome.reject('partial_rotary_factor', `is ${partial}; this architecture rotates whole heads`);
  if (!(partial > 0 && partial <= 1)) partialHome.reject('partial_rotary_factor', `must be in (0, 1], got ${partial}`);
  const dim = Math.trunc(options.headDim * partial);
  if (dim < 2 || dim % 2 !== 0) {
    if (partial === 1) f.reject('head_dim', `must be even for rotary embeddings, got ${dim}`);
    partialHome.reject('partial_rotary_factor', `gives ${dim} rotated dimensions per head; they must be even and at least 2`);
  }

  const maxPos = options.maxPositionEmbeddings;
  const s = section!;
  const positive = (key: string, fallback?: number): number => {
    const v = s.number(key, fallback);
    if (v <= 0) s.reject(key, `must be positive, got ${v}`);
    return v;
  };
  const config = {
    ropeType: type,
    theta,
    dim,
    maxPositionEmbeddings: maxPos,
    factor: 1,
    originalMaxPositionEmbeddings: maxPos,
    attentionFactor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 1,
    betaFast: 32,
    betaSlow: 1,
    truncate: true,
    shortFactor: [] as number[],
    longFactor: [] as number[],
  };
  switch (type) {
    case 'default':
      return config;
    case 'linear':
    case 'dynamic':
      config.factor = atLeastOne(s, 'factor');
      return config;
    case 'llama3': {
      config.factor = atLeastOne(s, 'factor');
      config.lowFreqFactor = positive('low_freq_factor');
      config.highFreqFactor = positive('high_freq_factor');
      if (config.highFreqFactor <= config.lowFreqFactor) {
        s.reject('high_freq_factor', `(${config.highFreqFactor}) must be greater than low_freq_factor (${config.lowFreqFactor})`);
      }
      config.originalMaxPositionEmbeddings = s.size('original_max_position_embeddings');
      return config;
    }
    case 'yarn': {
      // The factor is used as given (transformers since 4.56); original_max_position_embeddings only places the ramp.
      config.factor = atLeastOne(s, 'factor');
      config.originalMaxPositionEmbeddings = s.size('original_max_position_embeddings', maxPos);
      const mscale = (scale: number, m = 1): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      if (s.has('attention_factor')) config.attentionFactor = positive('attention_factor');
      else if (s.has('mscale') && s.has('mscale_all_dim') && s.number('mscale') && s.number('mscale_all_dim')) {
        config.attentionFactor = mscale(config.factor, s.number('mscale')) / mscale(config.factor, s.number('mscale_all_dim'));
      } else config.attentionFactor = mscale(config.factor);
      // transformers: `get('beta_fast') or 32`, so 0 means the default too.
      config.betaFast = s.number('beta_fast', 32) || 32;
      config.betaSlow = s.number('beta_slow', 1) || 1;
      config.truncate = s.boolean('truncate', true);
      return config;
    }
    case 'longrope': {
      const half = dim / 2;
      config.shortFactor = factorList(s, 'short_factor', half);
      config.longFactor = factorList(s, 'long_factor', half);
      const original = s.has('original_max_position_embeddings')
        ? s.size('original_max_position_embeddings')
        : options.topLevelOriginal !== undefined
          ? f.size('original_max_position_embeddings', options.topLevelOriginal)
          : null;
      config.originalMaxPositionEmbeddings = original ?? maxPos;
      config.factor = original ? maxPos / original : s.has('factor') ? positive('factor') : 1;
      config.attentionFactor = s.has('attention_factor')
        ? positive('attention_factor')
        : config.factor <= 1
          ? 1
          : Math.sqrt(1 + Math.log(config.factor) / Math.log(config.originalMaxPositionEmbeddings));
      return config;
    }
  }
}

function typeOf(section: ConfigFields): string {
  return (section.json['rope_type'] ?? section.json['type'] ?? 'default') as string;
}

function atLeastOne(s: ConfigFields, key: string): number {
  const v = s.number(key);
  if (v < 1) s.reject(key, `must be at least 1, got ${v}`);
  return v;
}

function factorList(s: ConfigFields, key: string, length: number): number[] {
  const v = s.json[key];
  if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) {
    s.reject(key, `must be a list of ${length} positive numbers (one per rotated frequency), got ${preview(v)}`);
  }
  return v as number[];
}

export interface RopeFrequencies {
  /** float32 inverse frequencies, length dim / 2. */
  readonly invFreq: Float32Array;
  /** Multiplies cos and sin. */
  readonly attentionScaling: number;
}

/** Whether the frequencies depend on how long the sequence is (so each forward computes its own). */
export function ropeDependsOnLength(rope: RopeConfig): boolean {
  return rope.ropeType === 'dynamic' || rope.ropeType === 'longrope';
}

/** Inverse frequencies for a forward whose positions reach `seqLen − 1`. */
export function ropeFrequencies(rope: RopeConfig, seqLen: number): RopeFrequencies {
  const { dim, theta, factor } = rope;
  const half = dim / 2;
  const scaling = rope.attentionFactor;
  switch (rope.ropeType) {
    case 'default':
      return { invFreq: ropeInverseFrequencies(dim, theta), attentionScaling: 1 };
    case 'linear':
      return { invFreq: ropeInverseFrequencies(dim, theta).map((f) => f / factor), attentionScaling: 1 };
    case 'dynamic': {
      const maxPos = rope.maxPositionEmbeddings;
      const len = Math.max(seqLen, maxPos);
      const base = theta * ((factor * len) / maxPos - (factor - 1)) ** (dim / (dim - 2));
      return { invFreq: ropeInverseFrequencies(dim, base), attentionScaling: 1 };
    }
    case 'llama3': {
      const old = rope.originalMaxPositionEmbeddings;
      const { lowFreqFactor: low, highFreqFactor: high } = rope;
      const lowWavelen = old / low;
      const highWavelen = old / high;
      return {
        invFreq: ropeInverseFrequencies(dim, theta).map((f) => {
          const wavelen = (2 * Math.PI) / f;
          if (wavelen < highWavelen) return f;
          if (wavelen > lowWavelen) return f / factor;
          const smooth = (old / wavelen - low) / (high - low);
          return (1 - smooth) * (f / factor) + smooth * f;
        }),
        attentionScaling: 1,
      };
    }
    case 'yarn': {
      const original = rope.originalMaxPositionEmbeddings;
      const correctionDim = (rotations: number): number => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
      let lo = correctionDim(rope.betaFast);
      let hi = correctionDim(rope.betaSlow);
      if (rope.truncate) [lo, hi] = [Math.floor(lo), Math.ceil(hi)];
      lo = Math.max(lo, 0);
      hi = Math.min(hi, dim - 1);
      if (lo === hi) hi += 0.001;
      const invFreq = new Float32Array(half);
      for (let i = 0; i < half; i++) {
        const posFreq = theta ** ((2 * i) / dim);
        const extrapolation = 1 - Math.min(Math.max((i - lo) / (hi - lo), 0), 1);
        invFreq[i] = (1 / (factor * posFreq)) * (1 - extrapolation) + (1 / posFreq) * extrapolation;
      }
      return { invFreq, attentionScaling: scaling };
    }
    case 'longrope': {
      const ext = seqLen > rope.originalMaxPositionEmbeddings ? rope.longFactor : rope.shortFactor;
      const invFreq = new Float32Array(half);
      for (let i = 0; i < half; i++) invFreq[i] = 1 / (Math.fround(ext[i]!) * theta ** ((2 * i) / dim));
      return { invFreq, attentionScaling: scaling };
    }
  }
}
