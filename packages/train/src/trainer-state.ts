/**
 * What a checkpoint holds besides the weights, so a resumed run continues bit for bit: the step, the
 * optimizer's moments (`optimizer.safetensors`, exact float32), every random generator's state and the
 * data order, in `trainer_state.json` (transformers' file name; its keys where they exist).
 */
import {
  type AdamW,
  defaultRandom,
  fromHostTensor,
  type HostTensor,
  type Module,
  type Parameter,
  Random,
  type Tensor,
  toHostTensor,
} from '@dorajs/core';
import type { DataOrderState } from './data-order.js';
import { CheckpointError } from './errors.js';
import { type FileSystem, join, readFile, readSafetensors, replaceFile, saveSafetensors } from '#node-fs';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_VERSION = 1;

export interface LogEntry {
  readonly step: number;
  readonly epoch: number;
  readonly [metric: string]: number;
}

export interface TrainerState {
  readonly global_step: number;
  readonly max_steps: number;
  readonly epoch: number;
  readonly train_batch_size: number;
  readonly log_history: readonly LogEntry[];
  /** dorajs's resume data (transformers keeps these in separate rng/scheduler files). */
  readonly dorajs: {
    readonly version: number;
    readonly dataOrder: DataOrderState;
    readonly rngStates: readonly (readonly number[])[];
    /** Sum of the per-step training losses so far (train_loss = sum / global_step). */
    readonly trainLossSum: number;
    /**
     * The logging window open at the save: summed step losses and steps since the last log entry, so a
     * resumed run logs the same averages as an uninterrupted one (absent in older checkpoints: 0).
     */
    readonly windowLoss?: number;
    readonly windowSteps?: number;
    readonly optimizerStep: number;
    readonly parameterNames: readonly string[];
  };
}

/**
 * Every generator that can influence training: the process default (used by dropout unless a module got
 * its own) and each module's own `_random`, deduplicated, in module order — stable for a given model.
 */
export function collectGenerators(model: Module): Random[] {
  const out: Random[] = [defaultRandom];
  for (const [, m] of model.namedModules()) {
    const r = (m as unknown as { _random?: unknown })._random;
    if (r instanceof Random && !out.includes(r)) out.push(r);
  }
  return out;
}

export async function saveTrainerState(dir: string, state: TrainerState, fs?: FileSystem): Promise<void> {
  await replaceFile(join(dir, TRAINER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { fs });
}

export async function loadTrainerState(dir: string): Promise<TrainerState> {
  let text: string;
  try {
    text = await readFile(join(dir, TRAINER_STATE_FILE), 'utf8');
  } catch (e) {
    throw new CheckpointError(`no ${TRAINER_STATE_FILE} (${(e as Error).message}): not a trainer checkpoint`, dir);
  }
  let state: TrainerState;
  try {
    state = JSON.parse(text) as TrainerState;
  } catch (e) {
    throw new CheckpointError(`${TRAINER_STATE_FILE} is not valid JSON: ${(e as Error).message}`, dir);
  }
  if (state?.dorajs?.version !== TRAINER_STATE_VERSION || typeof state.global_step !== 'number') {
    throw new CheckpointError(`${TRAINER_STATE_FILE} was not written by this version of @dorajs/train`, dir);
  }
  return state;
}

/** Moments under PyTorch's names, `<param>.exp_avg` and `<param>.exp_avg_sq`, from every optimizer. */
export async function saveOptimizerState(
  dir: string,
  optimizers: readonly AdamW[],
  params: readonly (readonly [string, Parameter])[],
  fs?: FileSystem,
): Promise<void> {
  const tensors = new Map<string, HostTensor>();
  for (const [name, p] of params) {
    const st = optimizers.map((o) => o.state.moments.get(p)).find((m) => m !== undefined);
    if (!st) continue;
    tensors.set(`${name}.exp_avg`, await toHostTensor(st.m));
    tensors.set(`${name}.exp_avg_sq`, await toHostTensor(st.v));
  }
  await saveSafetensors(join(dir, OPTIMIZER_FILE), tensors, { step: String(optimizers[0]?.state.step ?? 0) }, { fs });
}

/** Replaces every optimizer's moments and step with the checkpoint's. */
export async function loadOptimizerState(
  dir: string,
  optimizers: readonly AdamW[],
  params: readonly (readonly [string, Parameter])[],
  step: number,
): Promise<void> {
  const file = join(dir, OPTIMIZER_FILE);
  const contents = await readSafetensors(file).catch((e: unknown) => {
    throw new CheckpointError(`cannot read ${OPTIMIZER_FILE}: ${(e as Error).message}`, dir);
  });
  const loaded = new Map<Parameter, { m: Tensor; v: Tensor }>();
  try {
    for (const [name, p] of params) {
      const m = contents.tensors.get(`${name}.exp_avg`);
      const v = contents.tensors.get(`${name}.exp_avg_sq`);
      if (!m || !v) {
        // A parameter that never received a gradient has no moments, in PyTorch too.
        continue;
      }
      if (m.shape.join() !== p.shape.join() || v.shape.join() !== p.shape.join()) {
        throw new CheckpointError(
          `${OPTIMIZER_FILE}: moments of '${name}' are [${m.shape.join(', ')}], the parameter is [${p.shape.join(', ')}]`,
          dir,
        );
      }
      loaded.set(p, {
        m: fromHostTensor(m, p.backend, { file, key: `${name}.exp_avg` }),
        v: fromHostTensor(v, p.backend, { file, key: `${name}.exp_avg_sq` }),
      });
    }
  } catch (e) {
    for (const { m, v } of loaded.values()) {
      m.dispose();
      v.dispose();
    }
    throw e;
  }
  for (const o of optimizers) {
    o.dispose();
    for (const p of o.params) {
      const st = loaded.get(p);
      if (st) o.state.moments.set(p, st);
    }
    o.state.step = step;
  }
}
