/**
 * The options both fine-tuning jobs take, named after `dora finetune`'s flags in camelCase (which mirror
 * PEFT's examples/dora_finetuning/dora_finetuning.py), plus the hooks a front end renders.
 */
import { type Backend, type BackendSpec, ConfigError, resolveBackend } from '@dorajs/core';
import type { FileSystem } from '#node-fs';
import type { StepProgress } from './trainer.js';

export type FinetuneMethod = 'dora' | 'lora';

export interface FinetuneProgress extends StepProgress {
  /** Which adapter is training (the MNIST job trains both for its comparison). */
  readonly method: FinetuneMethod;
}

export interface FinetuneOptions {
  /** DoRA (default) or plain LoRA (`--no-dora`). */
  readonly useDora?: boolean;
  readonly loraR?: number;
  readonly loraAlpha?: number;
  readonly loraDropout?: number;
  /** Module names or suffixes (a comma-separated string is split), or PEFT's 'all-linear'. */
  readonly targetModules?: readonly string[] | string;
  readonly batchSize?: number;
  readonly gradAccum?: number;
  readonly maxSteps?: number;
  /** Evaluate (and log) every N steps; 0 = only before and after. */
  readonly evalStep?: number;
  readonly lr?: number;
  readonly seed?: number;
  /** 'cpu' | 'webgpu' | 'tfjs' | 'auto' (registered backends) or a Backend instance. */
  readonly backend?: BackendSpec;
  /** Where the trained adapter (PEFT format) is written. */
  readonly output?: string;
  /** Node: the file system the output is written with (tests inject faults and kills here). */
  readonly fs?: FileSystem;
  /** Node: told, one line each, what was cleaned up or restored from killed runs' leftovers beside the output. */
  readonly report?: (message: string) => void;
  /** After every optimizer step: loss and throughput for a progress bar. */
  readonly onProgress?: (progress: FinetuneProgress) => void;
  /** Report lines (default console.log); pass () => {} for silence. */
  readonly log?: (line: string) => void;
}

export type TargetModules = string[] | 'all-linear';

/** Splits a comma list and drops blanks: "q_proj, v_proj" → ['q_proj', 'v_proj']; 'all-linear' passes through. */
export function parseTargetModules(value: readonly string[] | string | undefined, fallback: readonly string[]): TargetModules {
  if (value === undefined) return [...fallback];
  if (value === 'all-linear') return value;
  const list = (typeof value === 'string' ? value.split(',') : value).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new ConfigError('targetModules is empty');
  return list;
}

export async function backendFor(spec: BackendSpec | undefined): Promise<{ backend: Backend; reason: string }> {
  return resolveBackend(spec ?? 'auto');
}

/** The hyper-parameters of a run, validated, with the job's defaults filled in. */
export interface ResolvedHyperParameters {
  readonly useDora: boolean;
  readonly loraR: number;
  readonly loraAlpha: number;
  readonly loraDropout: number;
  readonly batchSize: number;
  readonly gradAccum: number;
  readonly maxSteps: number;
  readonly evalStep: number;
  readonly lr: number;
  readonly seed: number;
}

export function resolveHyperParameters(o: FinetuneOptions, defaults: Omit<ResolvedHyperParameters, 'useDora'>): ResolvedHyperParameters {
  const h = {
    useDora: o.useDora ?? true,
    loraR: o.loraR ?? defaults.loraR,
    loraAlpha: o.loraAlpha ?? defaults.loraAlpha,
    loraDropout: o.loraDropout ?? defaults.loraDropout,
    batchSize: o.batchSize ?? defaults.batchSize,
    gradAccum: o.gradAccum ?? defaults.gradAccum,
    maxSteps: o.maxSteps ?? defaults.maxSteps,
    evalStep: o.evalStep ?? defaults.evalStep,
    lr: o.lr ?? defaults.lr,
    seed: o.seed ?? defaults.seed,
  };
  const positive = ['loraR', 'batchSize', 'gradAccum', 'maxSteps'] as const;
  for (const k of positive) if (!Number.isInteger(h[k]) || h[k] < 1) throw new ConfigError(`${k} must be a positive integer, got ${h[k]}`);
  if (!Number.isInteger(h.evalStep) || h.evalStep < 0) throw new ConfigError(`evalStep must be an integer ≥ 0, got ${h.evalStep}`);
  if (!(h.loraDropout >= 0 && h.loraDropout < 1)) throw new ConfigError(`loraDropout must be in [0, 1), got ${h.loraDropout}`);
  if (!(h.lr > 0) || !Number.isFinite(h.lr)) throw new ConfigError(`lr must be a positive number, got ${h.lr}`);
  if (!Number.isFinite(h.loraAlpha)) throw new ConfigError(`loraAlpha must be a number, got ${h.loraAlpha}`);
  if (!Number.isInteger(h.seed)) throw new ConfigError(`seed must be an integer, got ${h.seed}`);
  return h;
}

/** For report lines. */
export function describeTargets(targets: TargetModules): string {
  return typeof targets === 'string' ? targets : targets.join(', ');
}
