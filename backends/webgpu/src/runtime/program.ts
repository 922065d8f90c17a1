import type { UniformLayout } from '../uniforms.js';

/** A WGSL program: its source is a pure function of `key`, so pipelines are cached under it. */
export interface Program {
  readonly key: string;
  /** Pipeline label, for error messages and GPU captures. */
  readonly name: string;
  readonly uniforms: UniformLayout;
  /** read_write storage bindings first (1…outputs), then read-only inputs. */
  readonly outputs: number;
  readonly inputs: number;
  /** The WGSL body; the `Params` uniform struct (binding 0) is prepended. */
  source(): string;
}

const programCache = new Map<string, Program>();

/**
 * The program for `key`, built once per process: generating a kernel's WGSL pieces is far more host work
 * than recording its dispatch, and a program is a pure function of its key.
 */
export function memoProgram(key: string, make: () => Program): Program {
  let program = programCache.get(key);
  if (!program) {
    program = make();
    if (program.key !== key) throw new Error(`program key mismatch: '${program.key}' built for '${key}'`);
    programCache.set(key, program);
  }
  return program;
}
