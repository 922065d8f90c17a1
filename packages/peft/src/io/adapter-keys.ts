/**
 * PEFT's on-disk key names. The file drops the adapter name and the magnitude's `.weight`:
 * in memory `base_model.model.lin1.lora_A.default.weight` / `…lora_magnitude_vector.default.weight`,
 * on disk `base_model.model.lin1.lora_A.weight` / `…lora_magnitude_vector`.
 */
import type { TargetKind } from '../tuner/inject.js';

export const MODEL_PREFIX = 'base_model.model.';

/** Transformers' embedding layer names whose base weights PEFT saves with a targeting adapter (`save_embedding_layers='auto'`). */
export const EMBEDDING_LAYER_NAMES = ['embed_tokens', 'lm_head'] as const;

export interface AdapterFileKeys {
  readonly a: string;
  readonly b: string;
  readonly m: string;
  /** PEFT ≤ 0.11 kept `.weight` on the magnitude; accepted on load. */
  readonly mLegacy: string;
  readonly baseWeight: string;
  readonly baseBias: string;
}

export function adapterFileKeys(kind: TargetKind, path: string): AdapterFileKeys {
  const p = `${MODEL_PREFIX}${path}`;
  const emb = kind === 'embedding';
  return {
    a: emb ? `${p}.lora_embedding_A` : `${p}.lora_A.weight`,
    b: emb ? `${p}.lora_embedding_B` : `${p}.lora_B.weight`,
    m: `${p}.lora_magnitude_vector`,
    mLegacy: `${p}.lora_magnitude_vector.weight`,
    baseWeight: `${p}.base_layer.weight`,
    baseBias: `${p}.base_layer.bias`,
  };
}

/** Does PEFT's `save_embedding_layers='auto'` save this targeted layer's base weight? */
export function savesEmbeddingLayer(path: string): boolean {
  const last = path.split('.').pop()!;
  return (EMBEDDING_LAYER_NAMES as readonly string[]).includes(last);
}
