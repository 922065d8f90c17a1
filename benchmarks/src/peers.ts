/**
 * What the CPU comparisons (suites cpu-peers and cpu-speed) line up against each other: a labelled backend
 * with the threads it uses, and the TensorFlow.js peers both suites measure, tfjs-wasm being the reference.
 */
import { createTfjsBackend } from '@dorajs/backend-tfjs';
import type { Backend } from '@dorajs/core';

export interface Contender {
  readonly label: string;
  readonly backend: Backend;
  readonly threads: number;
  readonly notes: string;
}

/** Ratios in the CPU comparisons are against this contender (> 1 = faster than tfjs-wasm). */
export const REFERENCE = 'tfjs-wasm';

/** backend-tfjs over tfjs-backend-cpu and tfjs-backend-wasm (SIMD where the runtime has it), in `order`. */
export async function tfjsContenders(order: readonly ('cpu' | 'wasm')[]): Promise<Contender[]> {
  const list: Contender[] = [];
  for (const tfBackend of order) {
    const be = await createTfjsBackend({ tfBackend });
    list.push({
      label: `tfjs-${tfBackend}`,
      backend: be,
      threads: be.runtime.threads,
      notes: `backend-tfjs over tfjs-backend-${tfBackend}${be.runtime.simd ? ', SIMD' : ''}`,
    });
  }
  return list;
}
