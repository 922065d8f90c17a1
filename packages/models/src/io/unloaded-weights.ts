/**
 * Stand-ins the loader builds a model with before its weights are read. Core's layers always initialise
 * their parameters; on a real backend that would cost a random fill and a second full-size copy of the
 * model for values the checkpoint overwrites. Here parameters get shapes only: the backend keeps no
 * data and the random source hands out zero-filled arrays the OS maps lazily. Every parameter is then
 * given real storage by `Parameter.assign`; one that never is fails loudly on first use.
 */
import { type Backend, defaultRandom, DoraError, Random } from '@dorajs/core';

class UnloadedWeightError extends DoraError {}

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
 * Skips the arithmetic of initialisation (shapes are all the loader needs) but draws every other number
 * — dropout masks during training — from `source`, so seeding that generator still governs the model.
 */
class ZeroInitRandom extends Random {
  constructor(private readonly source: Random) {
    super();
  }

  override nextU32(): number {
    return this.source.nextU32();
  }

  override fillUniform(n: number): Float32Array {
    return new Float32Array(n);
  }

  override fillNormal(n: number): Float32Array {
    return new Float32Array(n);
  }
}

/** Options that build a model whose parameters have shapes but no storage yet; `random` drives dropout. */
export function unloadedWeights(random: Random = defaultRandom): { backend: Backend; random: Random } {
  return { backend: unloadedBackend as Backend, random: new ZeroInitRandom(random) };
}

export function isUnloaded(backend: Backend): boolean {
  return backend === (unloadedBackend as Backend);
}
