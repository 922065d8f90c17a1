/**
 * What the tuner and io modules need of a PeftModel beyond its public API: register a newly installed
 * adapter, check a new name, the random source and the offload backend. PeftModel hands these over when
 * it is constructed; they never appear on the class, so they stay out of the published types.
 */
import type { Backend, Random } from '@dorajs/core';
import type { LoraConfig } from './config/lora-config.js';

export interface PeftModelInternals {
  /** Records a newly installed adapter and refreshes activity and trainability. */
  registerAdapter(name: string, config: LoraConfig): void;
  /** Throws an AdapterNameError unless `name` may name a new adapter. */
  assertNewName(name: string): void;
  /** The offload backend an adapter's config asks for. */
  offloadFor(config: LoraConfig): Promise<Backend | null>;
  readonly random: Random | undefined;
}

const internals = new WeakMap<object, PeftModelInternals>();

export function attachInternals(peft: object, api: PeftModelInternals): void {
  internals.set(peft, api);
}

export function internalsOf(peft: object): PeftModelInternals {
  const api = internals.get(peft);
  if (!api) throw new TypeError('not a PeftModel');
  return api;
}
