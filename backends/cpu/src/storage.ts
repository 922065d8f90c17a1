/**
 * The CPU backend's storage handle: one typed array per tensor. float32 and int32 are computed with;
 * bfloat16/float16 are kept as their raw Uint16 bit patterns and int8/uint8 as-is, and `cast` widens them.
 *
 * With the wasm kernels the typed array is a view of the wasm heap (`ptr` is its byte address), so kernels
 * read and write tensors in place; otherwise (the JavaScript kernels, or an empty tensor) it is an ordinary
 * array and `ptr` is 0. A tensor the heap cannot hold is refused (OutOfMemoryError), never placed outside it.
 */
import { type AnyTypedArray, DisposedTensorError } from '@dorajs/core';
import type { WasmRuntime } from './wasm/runtime.js';

/** Counts the handles a backend instance has handed out and not yet had released. */
export class LiveCounter {
  count = 0;
  /** Bytes of the values those handles hold (what `memoryLimitBytes` caps). */
  bytes = 0;
}

type ArrayCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): AnyTypedArray; readonly BYTES_PER_ELEMENT: number };

export class CpuStorage {
  /** @internal set by `release`; a released handle can be neither read nor released again. */
  released = false;

  /** @internal create handles through the backend (`upload`, `fill` or a kernel), which counts them. */
  constructor(
    /** The values, row-major; never shared with the caller (upload and download copy). */
    readonly values: AnyTypedArray,
    /** @internal the counter of the backend that created this handle. */
    readonly owner: LiveCounter,
    /** @internal byte address in the wasm heap, 0 when the values are not in it. */
    readonly ptr = 0,
    /** @internal the heap the block belongs to (which frees it on release). */
    private readonly home: HeapHome | null = null,
  ) {
    owner.count++;
    owner.bytes += values.byteLength;
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
    this.owner.bytes -= this.values.byteLength;
    this.home?.free(this);
  }
}

interface Block {
  readonly ptr: number;
  readonly bytes: number;
}

/**
 * Hands out heap-backed storages and takes their blocks back on release — or, for a handle that was dropped
 * without being released, when the garbage collector finalises it (as an ordinary typed array would be
 * collected), so a caller that relies on GC does not leak heap.
 */
export class HeapHome {
  private readonly blocks = new WeakMap<CpuStorage, Block>();
  private readonly registry = new FinalizationRegistry<{ ptr: number; bytes: number }>(({ ptr, bytes }) =>
    this.runtime.heap.free(ptr, bytes),
  );

  constructor(readonly runtime: WasmRuntime) {}

  /**
   * A storage of `length` elements in the heap, or null if the heap cannot hold it. `init`: 'zero', 'none'
   * (whatever a reused block held: for kernels that write every element) or values to copy.
   */
  allocate(ctor: ArrayCtor, length: number, owner: LiveCounter, init: 'zero' | 'none' | ArrayLike<number>): CpuStorage | null {
    const bytes = length * ctor.BYTES_PER_ELEMENT;
    const ptr = this.runtime.heap.alloc(bytes);
    if (ptr === null) return null;
    const view = new ctor(this.runtime.buffer, ptr, length);
    if (init === 'zero') view.fill(0);
    else if (init !== 'none') (view as Float32Array).set(init);
    const storage = new CpuStorage(view, owner, ptr, this);
    this.blocks.set(storage, { ptr, bytes });
    this.registry.register(storage, { ptr, bytes }, storage);
    return storage;
  }

  free(s: CpuStorage): void {
    const b = this.blocks.get(s)!;
    this.registry.unregister(s);
    this.runtime.heap.free(b.ptr, b.bytes);
  }
}
