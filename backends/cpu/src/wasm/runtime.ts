/**
 * The wasm runtime shared by every wasm-kernel backend of this JavaScript thread: one linear memory, the
 * allocator of that memory, and the kernel module compiled in its two variants (with relaxed-SIMD FMA and
 * without). Tensors of all those backends live in this one heap; each backend keeps its own live-handle count.
 *
 * The memory is a shared WebAssembly.Memory where the engine allows one, for two reasons: worker threads
 * compute on it, and growing it never detaches its buffer, so the typed-array views that tensors are stay
 * valid while the heap grows (a plain non-shared memory would invalidate every view — including inputs a
 * kernel holds — at each growth). A browser page that is not cross-origin isolated cannot share memory;
 * there the memory is non-shared but its buffer is made resizable (`toResizableBuffer`), which growing
 * resizes in place, so views stay valid just the same, and the kernels run on the calling thread only.
 * Where the engine has neither (or no SIMD), there is no runtime and the backend uses its typed-array kernels.
 */
import { wasmFeatures } from './features.js';
import { HeapAllocator } from './heap.js';
import { wasmApi, type WasmInstance, type WasmMemory, type WasmModule } from './wasm-api.js';

/** wasm32 addresses 4 GiB; V8 reserves the address space of a shared memory's maximum up front. */
export const MAX_PAGES = 65536;
const PAGE = 65536;
/** Low addresses are never handed out, so 0 can mean "no pointer". */
const RESERVED = 1024;

/** A kernel entry point: task index, byte address of its argument block, thread id (0 = calling thread). */
export type TaskFn = (task: number, args: number, tid: number) => void;

export type TaskName = string;

export interface KernelVariant {
  /** Uses f32x4.relaxed_madd (FMA). */
  readonly fma: boolean;
  readonly module: WasmModule;
  /** Task entry points by name (every name of TASK_EXPORTS). */
  task(name: TaskName): TaskFn;
  readonly exports: Readonly<Record<string, unknown>>;
}

/**
 * Where a runtime gets its kernel module: the emitter (kernel-module.ts), handed in by whoever creates the
 * backend — `createCpuBackend` imports it, `loadCpuBackend` fetches it as a lazy chunk — so that this file,
 * and the backend class, never load it themselves.
 */
export interface KernelModuleSource {
  /** The module's bytes for FMA or not, on a shared memory or not. */
  bytes(fma: boolean, shared: boolean): Uint8Array;
  /** Exports the host calls (or hands to worker threads by name). */
  readonly tasks: readonly TaskName[];
}

export class WasmRuntime {
  readonly memory: WasmMemory;
  readonly heap: HeapAllocator;
  private readonly variants = new Map<boolean, KernelVariant>();

  private constructor(
    /** Whether the memory is shared (worker threads can compute on it); else its buffer is resizable. */
    readonly shared: boolean,
  ) {
    this.memory = new wasmApi!.Memory({ initial: 16, maximum: MAX_PAGES, shared });
    if (!shared) this.memory.toResizableBuffer!();
    this.heap = new HeapAllocator(this.memory, RESERVED, MAX_PAGES * PAGE);
  }

  private static instance: WasmRuntime | null = null;

  /**
   * The runtime of this thread, or null where the engine has no WebAssembly SIMD, or neither a shared
   * memory nor a resizable one.
   */
  static get(): WasmRuntime | null {
    const features = wasmFeatures();
    if (!features.simd || !(features.sharedMemory || features.resizableMemory)) return null;
    return (WasmRuntime.instance ??= new WasmRuntime(features.sharedMemory));
  }

  /** The kernels compiled with FMA (only where the engine has relaxed SIMD) or without. */
  variant(fma: boolean, source: KernelModuleSource): KernelVariant {
    let v = this.variants.get(fma);
    if (!v) {
      const module = new wasmApi!.Module(source.bytes(fma, this.shared));
      const { exports } = new wasmApi!.Instance(module, { env: { memory: this.memory } }) as WasmInstance;
      const tasks = new Map(source.tasks.map((name) => [name, exports[name] as TaskFn]));
      const task = (name: TaskName): TaskFn => {
        const fn = tasks.get(name);
        if (typeof fn !== 'function') throw new Error(`wasm kernel module has no task '${name}'`);
        return fn;
      };
      v = { fma, module, task, exports };
      this.variants.set(fma, v);
    }
    return v;
  }

  /** The current buffer (a new object after the memory grows; views made earlier stay valid). */
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.memory.buffer;
  }
}
