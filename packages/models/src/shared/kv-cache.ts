/**
 * The key/value cache of generation: per layer, one preallocated key and one value buffer
 * [batch, kvHeads, capacity, headDim] on the model's backend, written in place step by step
 * (`ops.writeSlice`) and never read back to the host. Rows are aligned: a batch of prompts is left-padded
 * to one length, so every row has the same `length` (cache positions filled); which positions hold real
 * tokens is the host-side `keyMask`, from which each step's positions and additive mask are built.
 *
 * How an architecture uses it (see `ForwardLayout`): its forward builds one layout per call from the ids
 * and `{ cache, attentionMask }`; each attention layer calls `layout.keysAndValues(layerIndex, k, v)` to
 * append this call's k/v and get the keys/values to attend to, and adds `layout.mask(...)` to its scores;
 * the forward ends with `layout.commit()`, which advances the cache only once every layer has written.
 */
import { type Backend, Parameter, zeros } from '@dorajs/core';
import { GenerationError } from '../errors.js';

/** What a model's cache holds per layer. */
export interface KVCacheSpec {
  readonly numLayers: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
}

export interface KVCacheOptions extends KVCacheSpec {
  readonly batch: number;
  /** Positions per row: prompt plus new tokens. */
  readonly capacity: number;
  readonly backend: Backend;
}

export class KVCache {
  readonly batch: number;
  readonly capacity: number;
  readonly spec: KVCacheSpec;
  /** Cache positions filled, the same for every row. */
  length = 0;
  /** `[batch · capacity]`: 1 where a position holds a real token, 0 for padding (and not yet written). */
  readonly keyMask: Uint8Array;
  private readonly _keys: Parameter[] = [];
  private readonly _values: Parameter[] = [];

  constructor(options: KVCacheOptions) {
    const { batch, capacity, numLayers, numKeyValueHeads, headDim, backend } = options;
    for (const [name, v] of Object.entries({ batch, capacity })) {
      if (!Number.isInteger(v) || v <= 0) throw new GenerationError(`KV cache ${name} must be a positive integer, got ${v}`);
    }
    this.batch = batch;
    this.capacity = capacity;
    this.spec = { numLayers, numKeyValueHeads, headDim };
    this.keyMask = new Uint8Array(batch * capacity);
    const shape = [batch, numKeyValueHeads, capacity, headDim];
    try {
      for (let l = 0; l < numLayers; l++) {
        for (const into of [this._keys, this._values]) {
          const z = zeros(shape, { backend });
          into.push(new Parameter(z, false));
          z.dispose();
        }
      }
    } catch (error) {
      // Out of memory half way: give back what was taken.
      this.dispose();
      throw error;
    }
  }

  /** The key and value buffers of `layer` ([batch, kvHeads, capacity, headDim]); owned by the cache. */
  layer(layer: number): { readonly key: Parameter; readonly value: Parameter } {
    const key = this._keys[layer];
    const value = this._values[layer];
    if (!key || !value) throw new GenerationError(`KV cache has ${this._keys.length} layers; layer ${layer} does not exist`);
    return { key, value };
  }

  /** Bytes held on the backend (float32). */
  get bytes(): number {
    const { numLayers, numKeyValueHeads, headDim } = this.spec;
    return 2 * numLayers * this.batch * numKeyValueHeads * this.capacity * headDim * 4;
  }

  /** Forgets every position (the buffers are reused by the next prefill). */
  reset(): void {
    this.length = 0;
    this.keyMask.fill(0);
  }

  dispose(): void {
    for (const p of [...this._keys, ...this._values]) p.dispose();
    this._keys.length = 0;
    this._values.length = 0;
  }
}
