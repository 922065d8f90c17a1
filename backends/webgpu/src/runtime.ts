/**
 * The GPU side of the backend: the queue. Dispatches are recorded into one open compute pass and submitted
 * lazily; readback maps a staging copy. The caches it drives live beside it in `runtime/`: compiled
 * pipelines by program key (`pipelines.ts`), kernel parameters in content-addressed uniform slots
 * (`uniform-arena.ts`), bind groups by buffer identity (`bind-groups.ts`), staging buffers (`readback.ts`);
 * storage buffers come from `buffer-pool.ts`. Fusion is explicit (core asks for fused kernels), so
 * dispatches are recorded in the order they are made.
 *
 * Host cost per dispatch is dominated by Dawn's native calls (each a few µs in Node), so a dispatch makes
 * as few as possible: identical parameters reuse one uniform slot, which lets bind groups be static:
 * `setBindGroup` without dynamic offsets is about half the cost, it is skipped when the group is already
 * bound, and `setPipeline` is skipped when unchanged. In steady state a dispatch creates nothing and
 * writes nothing.
 */
import { BufferPool, type GpuBuffer } from './buffer-pool.js';
import { BackendDisposedError, DeviceLostError, GpuOutOfMemoryError, GpuValidationError } from './errors.js';
import { packUniforms } from './uniforms.js';
import { BindGroupCache } from './runtime/bind-groups.js';
import { type CompiledProgram, PipelineCache } from './runtime/pipelines.js';
import type { Program } from './runtime/program.js';
import { StagingBuffers } from './runtime/readback.js';
import { UniformArena } from './runtime/uniform-arena.js';

export { memoProgram, type Program } from './runtime/program.js';

export interface DispatchCall {
  readonly program: Program;
  readonly outputs: readonly GpuBuffer[];
  readonly inputs: readonly GpuBuffer[];
  readonly scalars?: Readonly<Record<string, number>>;
  readonly dims?: readonly number[];
  readonly workgroups: readonly [number, number?, number?];
}

export interface RuntimeStats {
  dispatches: number;
  submits: number;
  /** mapAsync readbacks: the only host round trips. */
  readbacks: number;
  pipelines: number;
  bindGroupsCreated: number;
  /** Distinct parameter blocks written since the slots were last recycled. */
  uniformSlots: number;
  /** Fused DoRA kernels served in one pass (`matmulCompose`, `matmulWeightNorm`). */
  fused: number;
}

const ARENA_BYTES = 256 * 1024;
/**
 * Dispatches per submit: bounds the work a batch holds back. Large, because buffers released in a batch
 * come back (in a different order) after each submit, and new pairings of buffers cost new bind groups.
 */
const MAX_BATCH_DISPATCHES = 1024;
/**
 * Bytes of released buffers a batch may hold parked (unusable until the submit): past this, submit, so a
 * long batch of large temporaries recycles them instead of allocating (and zero-filling) new ones.
 */
const MAX_PARKED_BYTES = 512 * 1024 * 1024;

export class GpuRuntime {
  readonly stats: RuntimeStats = { dispatches: 0, submits: 0, readbacks: 0, pipelines: 0, bindGroupsCreated: 0, uniformSlots: 0, fused: 0 };
  readonly pool: BufferPool;
  private readonly pipelines: PipelineCache;
  private readonly bindGroups: BindGroupCache;
  private readonly uniforms: UniformArena;
  private readonly staging: StagingBuffers;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passPipeline: GPUComputePipeline | null = null;
  private passBindGroup: GPUBindGroup | null = null;
  private batchDispatches = 0;
  private pendingError: Error | null = null;
  private lostError: DeviceLostError | null = null;
  private disposed = false;
  private readonly dumpShaders: boolean;
  private readonly onUncaptured = (ev: Event): void => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    this.record(new GpuValidationError(`WebGPU error: ${err.message}`));
  };
  /** Resolves when the device is lost (or destroyed); used to tell a lost device from a failed map. */
  readonly lost: Promise<DeviceLostError>;

  constructor(
    readonly device: GPUDevice,
    options: { maxPoolBytes?: number; uniformArenaBytes?: number; dumpShaders?: boolean } = {},
  ) {
    this.dumpShaders = options.dumpShaders ?? false;
    this.bindGroups = new BindGroupCache(device, this.stats);
    this.pool = new BufferPool(
      (size, usage) => this.createBuffer(size, usage),
      options.maxPoolBytes ?? 1 << 30,
      () => this.bindGroups.clear(),
    );
    this.limits = copyLimits(device.limits);
    this.pipelines = new PipelineCache(device, (message) => this.record(new GpuValidationError(message), true));
    this.uniforms = new UniformArena(
      device,
      Math.max(16, this.limits.minUniformBufferOffsetAlignment),
      options.uniformArenaBytes ?? ARENA_BYTES,
      this.stats,
      () => {
        this.submit();
        this.bindGroups.clear();
      },
    );
    this.staging = new StagingBuffers((size, usage) => this.createBuffer(size, usage));
    device.addEventListener('uncapturederror', this.onUncaptured);
    this.lost = device.lost.then((info) => {
      const err = new DeviceLostError(info.reason ?? 'unknown', info.message);
      if (!this.disposed) this.lostError = err;
      return err;
    });
  }

  /**
   * The device's limits, copied once: each `device.limits.x` is two native calls in Dawn's Node bindings,
   * and kernels read limits on every dispatch.
   */
  readonly limits: GPUSupportedLimits;

  /** Throws the first recorded asynchronous failure (lost device, OOM, validation), if any. */
  check(): void {
    if (this.disposed) throw new BackendDisposedError('webgpu backend used after dispose()');
    if (this.lostError) throw this.lostError;
    if (this.pendingError) {
      const e = this.pendingError;
      this.pendingError = null;
      throw e;
    }
  }

  /** Keeps the first failure, except that a compile error replaces the "invalid pipeline" noise it causes. */
  private record(e: Error, isCause = false): void {
    if (!this.pendingError || (isCause && /due to a previous error/.test(this.pendingError.message))) this.pendingError = e;
  }

  private createBuffer(size: number, usage: number): GPUBuffer {
    const max = Math.min(this.limits.maxBufferSize, this.limits.maxStorageBufferBindingSize);
    if (size > max) {
      throw new GpuOutOfMemoryError(`buffer of ${size} bytes exceeds the device limit of ${max} bytes`, size);
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage });
    void this.device.popErrorScope().then((err) => {
      if (err) this.record(new GpuOutOfMemoryError(`out of GPU memory allocating ${size} bytes: ${err.message}`, size));
    });
    return buffer;
  }

  // ---- programs

  compile(program: Program): CompiledProgram {
    const compiled = this.pipelines.compile(program, this.dumpShaders);
    this.stats.pipelines = this.pipelines.size;
    return compiled;
  }

  /** Number of distinct programs compiled so far (each key compiles once). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  hasPipeline(key: string): boolean {
    return this.pipelines.has(key);
  }

  /** Keys of the programs compiled so far, in compile order. */
  programKeys(): string[] {
    return this.pipelines.keys();
  }

  // ---- recording

  private ensurePass(): GPUComputePassEncoder {
    if (this.encoder && (this.batchDispatches >= MAX_BATCH_DISPATCHES || this.pool.parkedBytes > MAX_PARKED_BYTES)) this.submit();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'dora batch' });
    if (!this.pass) {
      this.pass = this.encoder.beginComputePass();
      this.passPipeline = null;
      this.passBindGroup = null;
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
      this.passPipeline = null;
      this.passBindGroup = null;
    }
  }

  dispatch(call: DispatchCall): void {
    this.check();
    const [x, y = 1, z = 1] = call.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const compiled = this.compile(call.program);
    const words = compiled.uniformSize / 4;
    this.uniforms.scratch.fill(0, 0, words);
    packUniforms(call.program.uniforms, call.scalars ?? {}, call.dims ?? [], this.uniforms.scratch, 0);
    const slot = this.uniforms.slot(words);
    const group = this.bindGroups.get(compiled, slot, call.outputs, call.inputs);
    const pass = this.ensurePass();
    if (this.passPipeline !== compiled.pipeline) {
      pass.setPipeline(compiled.pipeline);
      this.passPipeline = compiled.pipeline;
    }
    if (this.passBindGroup !== group) {
      pass.setBindGroup(0, group);
      this.passBindGroup = group;
    }
    pass.dispatchWorkgroups(x, y, z);
    this.batchDispatches++;
    this.stats.dispatches++;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    this.submit();
  }

  /** Submits what is recorded. */
  private submit(): void {
    if (!this.encoder) {
      // Nothing unsubmitted can reference a parked buffer, so they are reusable now.
      this.afterSubmit();
      return;
    }
    this.endPass();
    this.uniforms.write();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.batchDispatches = 0;
    this.stats.submits++;
    this.afterSubmit();
  }

  private afterSubmit(): void {
    this.pool.afterSubmit();
  }

  // ---- data movement

  /** Writes host bytes into a storage buffer (ordered before any later submit). */
  write(target: GpuBuffer, bytes: ArrayBufferView): void {
    this.check();
    const len = bytes.byteLength;
    if (len === 0) return;
    if (len % 4 === 0) {
      this.device.queue.writeBuffer(target.buffer, target.offset ?? 0, bytes.buffer, bytes.byteOffset, len);
    } else {
      const padded = new Uint8Array(Math.ceil(len / 4) * 4);
      padded.set(new Uint8Array(bytes.buffer, bytes.byteOffset, len));
      this.device.queue.writeBuffer(target.buffer, target.offset ?? 0, padded);
    }
  }

  /**
   * Writes `size` bytes (a multiple of 4) of `data` from byte `dataOffset` at byte `offset` (a multiple of 4)
   * of `target`, ordered before any later submit. The bytes are copied before this returns.
   */
  writeAt(target: GpuBuffer, offset: number, data: Uint8Array, dataOffset: number, size: number): void {
    this.check();
    this.device.queue.writeBuffer(target.buffer, (target.offset ?? 0) + offset, data.buffer, data.byteOffset + dataOffset, size);
  }

  /**
   * Submits what is recorded and waits until the queue has executed everything, including earlier
   * `writeBuffer`s (whose copies the implementation holds until then). `submit([])` hands writes that are
   * not yet in a submit to the queue (Dawn keeps them pending otherwise).
   */
  async drain(): Promise<void> {
    this.check();
    this.flush();
    this.device.queue.submit([]);
    try {
      await this.device.queue.onSubmittedWorkDone();
    } catch (e) {
      throw await this.explainFailure(e as Error, 'upload');
    }
    this.check();
  }

  /** Copies `bytes` from the start of `src` to the host: one submit, one mapAsync. */
  async read(src: GpuBuffer, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.staging.take(size);
    this.ensurePass();
    this.endPass();
    this.encoder!.copyBufferToBuffer(src.buffer, src.offset ?? 0, staging, 0, size);
    this.flush();
    this.stats.readbacks++;
    let out: ArrayBuffer;
    try {
      out = await this.staging.download(staging, size, bytes);
    } catch (e) {
      throw await this.explainFailure(e as Error, 'download');
    }
    this.check();
    return out;
  }

  /** A map or queue failure is a lost device when `device.lost` settles shortly after; else rethrow. */
  private async explainFailure(e: Error, op: string): Promise<Error> {
    if (this.lostError) return this.lostError;
    const lost = await Promise.race([this.lost, new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
    if (lost && !this.disposed) return lost;
    return new GpuValidationError(`${op} failed: ${e.message}`, { cause: e });
  }

  /** Waits until every submitted command has finished. */
  async sync(): Promise<void> {
    this.check();
    this.flush();
    try {
      await this.device.queue.onSubmittedWorkDone();
    } catch (e) {
      throw await this.explainFailure(e as Error, 'sync');
    }
    this.check();
  }

  dispose(destroyDevice: boolean): void {
    if (this.disposed) return;
    if (!this.lostError) {
      try {
        this.flush();
      } catch {
        // nothing to save: the device is going away
      }
    }
    this.disposed = true;
    this.device.removeEventListener('uncapturederror', this.onUncaptured);
    this.pool.trim();
    this.staging.destroy();
    this.uniforms.destroy();
    this.pipelines.clear();
    this.bindGroups.clear();
    if (destroyDevice) this.device.destroy();
  }
}

function copyLimits(limits: GPUSupportedLimits): GPUSupportedLimits {
  const copy: Record<string, unknown> = {};
  // GPUSupportedLimits exposes its values as prototype getters, so enumerate with for…in.
  for (const key in limits) {
    const value = (limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') copy[key] = value;
  }
  return Object.freeze(copy) as unknown as GPUSupportedLimits;
}
