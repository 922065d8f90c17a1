/**
 * The CPU backend's storage handle: one typed array per tensor. float32 and int32 are computed with;
 * bfloat16/float16 are kept as their raw Uint16 bit patterns and int8/uint8 as-is, and `cast` widens them.
 */
import { type AnyTypedArray, DisposedTensorError } from '@dorajs/core';

/** Counts the handles a backend instance has handed out and not yet had released. */
export class LiveCounter {
  count = 0;
}

export class CpuStorage {
  /** @internal set by `release`; a released handle can be neither read nor released again. */
  released = false;

  /** @internal create handles through the backend (`upload`, `fill` or a kernel), which counts them. */
  constructor(
    /** The values, row-major; never shared with the caller (upload and download copy). */
    readonly values: AnyTypedArray,
    /** @internal the counter of the backend that created this handle. */
    readonly owner: LiveCounter,
  ) {
    owner.count++;
  }

  /** @internal */
  markReleased(): void {
    if (this.released) {
      throw new DisposedTensorError(
        `cpu release: a storage of ${this.values.length} elements (${this.values.constructor.name}) was released twice`,
      );
    }
    this.released = true;
    this.owner.count--;
  }
}
