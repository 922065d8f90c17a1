/**
 * Per-sample adapter names for one call (PEFT's `adapter_names=`). A layer's own forward takes them as an
 * option; a call through the wrapped model's forward, which knows nothing of adapters, reaches its layers
 * through this scope, which PeftModel opens around that one call — never a mutable field on the layers.
 */
const scopes = new WeakMap<object, readonly string[]>();

export function batchAdapterNamesFor(layer: object): readonly string[] | undefined {
  return scopes.get(layer);
}

/** Runs fn with `names` routed to each of `layers`. */
export function withBatchAdapterNames<T>(layers: readonly object[], names: readonly string[], fn: () => T): T {
  for (const l of layers) scopes.set(l, names);
  try {
    return fn();
  } finally {
    for (const l of layers) scopes.delete(l);
  }
}
