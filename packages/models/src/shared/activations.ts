/** transformers' ACT2FN names mapped to core ops, so config.json's activation names mean the same here. */
import { ops, type Tensor } from '@dorajs/core';
import type { ConfigFields } from '../config/config-fields.js';
import { UnsupportedActivationError } from '../errors.js';

export type Activation = (x: Tensor) => Tensor;

const ACTIVATIONS: Readonly<Record<string, Activation>> = {
  // gelu_new and gelu_pytorch_tanh are the same tanh approximation (NewGELUActivation / approximate='tanh').
  gelu_new: ops.geluTanh,
  gelu_pytorch_tanh: ops.geluTanh,
  gelu: ops.gelu,
  relu: ops.relu,
  silu: ops.silu,
  swish: ops.silu,
};

export const ACTIVATION_NAMES: readonly string[] = Object.keys(ACTIVATIONS);

/** Reads an activation name from `field`; unknown names are a typed error naming file, field and name. */
export function readActivation(fields: ConfigFields, field: string, fallback: string): string {
  const name = fields.string(field, fallback);
  if (!Object.hasOwn(ACTIVATIONS, name)) throw new UnsupportedActivationError(name, fields.file, field, ACTIVATION_NAMES);
  return name;
}

export function activationByName(name: string): Activation {
  const fn = ACTIVATIONS[name];
  if (!fn) throw new UnsupportedActivationError(name, '<config>', 'activation', ACTIVATION_NAMES);
  return fn;
}
