/**
 * transformers' logits processors and warpers on one row of next-token scores (host float32, as the
 * model computed them), applied in transformers' order: repetition penalty, then — when sampling —
 * temperature, top-k, top-p; then argmax or a seeded multinomial draw.
 */
import type { Random } from '@dorajs/core';
import type { ResolvedGenerationConfig } from './generation-config.js';

/** RepetitionPenaltyLogitsProcessor: seen tokens' scores divided by the penalty (multiplied when negative). */
export function applyRepetitionPenalty(scores: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    const s = scores[id]!;
    scores[id] = Math.fround(s < 0 ? s * penalty : s / penalty);
  }
}

/** TopKLogitsWarper: scores below the k-th largest become −∞ (ties with it are kept). */
export function applyTopK(scores: Float32Array, k: number): void {
  if (k <= 0 || k >= scores.length) return;
  const kth = Float32Array.from(scores).sort().reverse()[k - 1]!;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < kth) scores[i] = Number.NEGATIVE_INFINITY;
}

/**
 * TopPLogitsWarper: sorted ascending, tokens whose cumulative probability stays ≤ 1 − p are removed;
 * the most likely token always stays.
 */
export function applyTopP(scores: Float32Array, p: number): void {
  if (p >= 1) return;
  const order = Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]! || a - b);
  const probs = softmax64(scores);
  let cumulative = 0;
  for (let r = 0; r < order.length - 1; r++) {
    cumulative += probs[order[r]!]!;
    if (cumulative > 1 - p) break;
    scores[order[r]!] = Number.NEGATIVE_INFINITY;
  }
}

/** Softmax in float64 (−∞ → 0). */
export function softmax64(scores: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const s of scores) max = Math.max(max, s);
  const out = new Float64Array(scores.length);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    out[i] = Math.exp(scores[i]! - max);
    sum += out[i]!;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

/** Index of the largest score (the first of equals, as torch.argmax). */
export function argMax(scores: Float32Array): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/** The next token of one row: processors, then argmax or a draw from `random`. `scores` is overwritten. */
export function nextToken(scores: Float32Array, seen: Iterable<number>, config: ResolvedGenerationConfig, random: Random): number {
  applyRepetitionPenalty(scores, seen, config.repetitionPenalty);
  if (!config.doSample) return argMax(scores);
  if (config.temperature !== 1) for (let i = 0; i < scores.length; i++) scores[i] = Math.fround(scores[i]! / config.temperature);
  applyTopK(scores, config.topK);
  applyTopP(scores, config.topP);
  const probs = softmax64(scores);
  const u = random.next();
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! === 0) continue;
    last = i;
    cumulative += probs[i]!;
    if (u < cumulative) return i;
  }
  return last;
}
