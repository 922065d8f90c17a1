/** What every model here is: ids [batch, seq] in, logits [batch, seq, vocab] out. */
import { type Backend, Layer, type Random, type Tensor } from '@dorajs/core';
import { checkIdsTensor } from './token-ids.js';

export interface ModelOptions {
  /** Where parameters live; default: core's default backend. */
  readonly backend?: Backend;
  /** Initialisation and dropout randomness; default: core's seeded default generator. */
  readonly random?: Random;
}

/** The parsed config every architecture shares. */
export interface CausalLMConfig {
  readonly modelType: string;
  readonly vocabSize: number;
}

export abstract class CausalLM<C extends CausalLMConfig = CausalLMConfig> extends Layer {
  abstract readonly config: C;

  /** Logits [batch, seq, vocab] for int32 ids [batch, seq] (values are trusted: see `tokenIds`). */
  abstract override forward(ids: Tensor): Tensor;

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  protected checkIds(ids: Tensor): void {
    checkIdsTensor(ids, `${this.typeName}.forward`);
  }
}
