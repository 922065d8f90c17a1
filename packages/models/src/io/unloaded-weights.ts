/**
 * Stand-ins the loader builds a model with before its weights are read. Core's layers always initialise
 * their parameters; on a real backend that would cost a random fill and a second full-size copy of the
 * model for values the checkpoint overwrites. Here parameters get shapes only: the backend keeps no
 * data and the random source hands out zero-filled arrays the OS maps lazily. Every parameter is then
 * given real storage by `Parameter.assign`; one that never is fails loudly on first use.
 */
import { type Backend, defaultRandom, DoraError, Random } from '@dorajs/core';
import { ModelSizeError } from '../errors.js';

class UnloadedWeightError extends DoraError {
  static override readonly typeName: string = 'UnloadedWeightError';
}

function notLoaded(): never {
  throw new UnloadedWeightError('a parameter was used before its weight was loaded from the checkpoint');
}

const unloadedBackend: Backend<null> = {
  name: 'unloaded',
  capabilities: { dtypes: ['float32', 'int32'], offHost: false },
  upload: () => null,
  fill: () => null,
  release: () => {},
  liveBuffers: () => 0,
  sync: async () => {},
  dispose: () => {},
  download: notLoaded,
  matmul: notLoaded,
  binary: notLoaded,
  unary: notLoaded,
  affine: notLoaded,
  where: notLoaded,
  reduce: notLoaded,
  argMax: notLoaded,
  softmax: notLoaded,
  gather: notLoaded,
  scatterAdd: notLoaded,
  transpose: notLoaded,
  slice: notLoaded,
  concat: notLoaded,
  cast: notLoaded,
  conv2d: notLoaded,
  conv2dBackpropInput: notLoaded,
  conv2dBackpropFilter: notLoaded,
};

/**
 * How many weights a config.json may declare: a checkpoint of N stored values cannot fill a model of many
 * more, so a config that declares one (`vocab_size: 1e12`, `num_hidden_layers: 200000`) is refused while
 * the model is being built — before the allocation, not after 13 s and gigabytes.
 */
export interface WeightBudget {
  /** Most values the model's weight matrices may hold in total. */
  readonly values: number;
  /** The config.json that declared the sizes, and the checkpoint they are checked against. */
  readonly config: string;
  readonly checkpoint: string;
}

/**
 * Skips the arithmetic of initialisation (shapes are all the loader needs) but draws every other number
 * — dropout masks during training — from `source`, so seeding that generator still governs the model.
 */
class ZeroInitRandom extends Random {
  #used = 0;

  constructor(
    private readonly source: Random,
    private readonly budget: WeightBudget | undefined,
  ) {
    super();
  }

  override nextU32(): number {
    return this.source.nextU32();
  }

  override fillUniform(n: number): Float32Array {
    return this.#zeros(n);
  }

  override fillNormal(n: number): Float32Array {
    return this.#zeros(n);
  }

  #zeros(n: number): Float32Array {
    this.#used += n;
    if (this.budget && this.#used > this.budget.values)
      throw new ModelSizeError(this.budget.config, this.budget.checkpoint, this.budget.values);
    return new Float32Array(n);
  }
}

/**
 * Options that build a model whose parameters have shapes but no storage yet; `random` drives dropout.
 * With a `budget`, weight matrices beyond it raise a ModelSizeError before they are allocated.
 */
export function unloadedWeights(random: Random = defaultRandom, budget?: WeightBudget): { backend: Backend; random: Random } {
  return { backend: unloadedBackend as Backend, random: new ZeroInitRandom(random, budget) };
}

export function isUnloaded(backend: Backend): boolean {
  return backend === (unloadedBackend as Backend);
}
