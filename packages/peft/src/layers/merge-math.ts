/**
 * The pure merge computation of one layer, on whatever backend its inputs live on: each adapter's variant
 * merges into W in order, every DoRA norm taken from the unmerged base (so merged = unmerged forward, also
 * for several DoRA adapters on one layer — PEFT ≤ 0.20 took it from the running weight, issue #3608).
 */
import { noGrad, type Tensor, tidy } from '@dorajs/core';
import { MergeError } from '../errors.js';
import type { MergeInput, MergeRecord } from '../variants/variant.js';
import type { MergeSpace } from './lora-layer.js';

/** An adapter already merged into W, with what its variant recorded. */
export interface MergedInput {
  readonly input: MergeInput;
  readonly record: MergeRecord;
}

/** W with every merged adapter removed, last merged first. */
export function unmergeAll(path: string, space: MergeSpace, w: Tensor, merged: readonly MergedInput[]): Tensor {
  return tidy(() =>
    noGrad(() => {
      let acc = space.weight(w);
      for (let i = merged.length - 1; i >= 0; i--) {
        const { input, record } = merged[i]!;
        acc = named(path, input, () => input.variant.unmerge(space.geometry, acc, space.input(input), record));
      }
      return acc;
    }),
  );
}

/**
 * W with `adding` merged after the adapters already in it. The norms come from the unmerged base: W
 * itself when nothing is merged yet, else W with the earlier merges undone.
 */
export function mergeAll(
  path: string,
  space: MergeSpace,
  w: Tensor,
  merged: readonly MergedInput[],
  adding: readonly MergeInput[],
): { weight: Tensor; records: MergeRecord[] } {
  return tidy(() =>
    noGrad(() => {
      const base = merged.length ? unmergeAll(path, space, w, merged) : space.weight(w);
      let acc = space.weight(w);
      const records: MergeRecord[] = [];
      for (const input of adding) {
        const step = named(path, input, () => input.variant.merge(space.geometry, acc, base, space.input(input)));
        acc = step.weight;
        records.push(step.record);
      }
      return { weight: acc, records };
    }),
  );
}

function named<T>(path: string, input: MergeInput, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof MergeError) throw e;
    throw new MergeError(`module '${path}', adapter '${input.name}': ${(e as Error).message}`, path, input.name);
  }
}
