/**
 * A deep copy of a module tree with fresh parameter storage (PEFT deep-copies modules_to_save). Parameters
 * shared inside the tree stay shared in the copy; every other property is copied by reference (layer
 * hyper-parameters are immutable).
 */
import { Module, noGrad, ops, Parameter } from '@dorajs/core';

export function cloneModule<M extends Module>(module: M, seen = new Map<unknown, unknown>()): M {
  const existing = seen.get(module);
  if (existing) return existing as M;
  const copy = Object.create(Object.getPrototypeOf(module) as object) as Record<string, unknown>;
  seen.set(module, copy);
  for (const [key, value] of Object.entries(module)) {
    if (value instanceof Parameter) {
      let p = seen.get(value) as Parameter | undefined;
      if (!p) {
        const values = noGrad(() => ops.mulScalar(value, 1));
        p = new Parameter(values, value.requiresGrad);
        values.dispose();
        seen.set(value, p);
      }
      copy[key] = p;
    } else if (value instanceof Module) {
      copy[key] = cloneModule(value, seen);
    } else {
      copy[key] = value;
    }
  }
  return copy as M;
}
