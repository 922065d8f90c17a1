/**
 * The order examples are visited in: a fresh permutation per epoch derived from (seed, epoch) alone, so a
 * resumed run only needs (epoch, offset) to continue exactly where it stopped. Batches never span two
 * epochs; the last batch of an epoch may be smaller (transformers' drop_last=False).
 */
import { ConfigError, Random } from '@dorajs/core';

export interface DataOrderState {
  readonly seed: number;
  readonly epoch: number;
  /** Examples of `epoch` already handed out. */
  readonly offset: number;
}

export class DataOrder {
  private epochValue = 0;
  private offsetValue = 0;
  private order: Uint32Array;

  constructor(
    readonly length: number,
    readonly seed: number,
    readonly shuffle = true,
  ) {
    if (!(length > 0)) throw new ConfigError(`training data is empty (${length} examples)`);
    this.order = this.permutation(0);
  }

  get epoch(): number {
    return this.epochValue;
  }

  /** Fractional epochs completed, as transformers logs `epoch`. */
  get progress(): number {
    return this.epochValue + this.offsetValue / this.length;
  }

  /** The next up to `size` example indices. */
  next(size: number): number[] {
    if (this.offsetValue >= this.length) {
      this.epochValue++;
      this.offsetValue = 0;
      this.order = this.permutation(this.epochValue);
    }
    const end = Math.min(this.length, this.offsetValue + size);
    const out = Array.from(this.order.subarray(this.offsetValue, end));
    this.offsetValue = end;
    return out;
  }

  getState(): DataOrderState {
    return { seed: this.seed, epoch: this.epochValue, offset: this.offsetValue };
  }

  setState(state: DataOrderState): void {
    if (state.seed !== this.seed)
      throw new ConfigError(`data order: checkpoint seed ${state.seed} differs from this run's seed ${this.seed}`);
    if (!(state.offset >= 0 && state.offset <= this.length)) {
      throw new ConfigError(`data order: checkpoint offset ${state.offset} does not fit ${this.length} examples (different data?)`);
    }
    this.epochValue = state.epoch;
    this.offsetValue = state.offset;
    this.order = this.permutation(state.epoch);
  }

  private permutation(epoch: number): Uint32Array {
    const p = new Uint32Array(this.length);
    for (let i = 0; i < p.length; i++) p[i] = i;
    if (!this.shuffle) return p;
    // Fisher–Yates with a generator seeded from (seed, epoch) only.
    const rng = new Random((Math.imul(this.seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca77)) >>> 0);
    for (let i = p.length - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }
}
