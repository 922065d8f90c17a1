/**
 * The GPU side of the backend: compiled pipelines cached by program key, bind groups cached by buffer
 * identity, dispatches recorded into one open compute pass and submitted lazily, and readback.
 *
 * Host cost per dispatch is dominated by Dawn's native calls (each a few µs in Node), so a dispatch makes
 * as few as possible: kernel parameters live in content-addressed uniform slots (identical parameters,
 * the common case in any loop, reuse one slot), which lets bind groups be static: `setBindGroup` without
 * dynamic offsets is about half the cost, it is skipped when the group is already bound, and
 * `setPipeline` is skipped when unchanged. In steady state a dispatch creates nothing and writes nothing.
 *
 * Deferred dispatches (`defer`) let kernels fuse lazily: a matmul can be held back until something reads
 * its output, so a following `doraCompose` or `weightNorm` over the same operands can be folded into it.
 * Reordering is safe because, within a batch, every buffer has a single writer: outputs are fresh pool
 * buffers and released buffers are not reused before the next submit. A deferred op is emitted before
 * any dispatch that reads what it writes, and before any submit or readback.
 */
import { BufferPool, type GpuBuffer } from './buffer-pool.js';
import { BackendDisposedError, DeviceLostError, GpuOutOfMemoryError, GpuValidationError } from './errors.js';
import { BufferUsage, MapModeRead, ShaderStageCompute } from './gpu-constants.js';
import { packUniforms, uniformBytes, uniformStructWgsl, type UniformLayout } from './uniforms.js';

/** A WGSL program: its source is a pure function of `key`, so pipelines are cached under it. */
export interface Program {
  readonly key: string;
  /** Pipeline label, for error messages and GPU captures. */
  readonly name: string;
  readonly uniforms: UniformLayout;
  /** read_write storage bindings first (1…outputs), then read-only inputs. */
  readonly outputs: number;
  readonly inputs: number;
  /** The WGSL body; the `Params` uniform struct (binding 0) is prepended. */
  source(): string;
}

const programCache = new Map<string, Program>();

/**
 * The program for `key`, built once per process: generating a kernel's WGSL pieces is far more host work
 * than recording its dispatch, and a program is a pure function of its key.
 */
export function memoProgram(key: string, make: () => Program): Program {
  let program = programCache.get(key);
  if (!program) {
    program = make();
    if (program.key !== key) throw new Error(`program key mismatch: '${program.key}' built for '${key}'`);
    programCache.set(key, program);
  }
  return program;
}

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
  /** Deferred ops folded into a later kernel (see `defer`). */
  fused: number;
}

/** A dispatch (or a few) held back so that a later kernel may fold itself into it. */
export interface PendingOp {
  readonly kind: string;
  /** Buffers the op writes: a dispatch reading one of them forces the op out first. */
  readonly writes: readonly GpuBuffer[];
  /** Buffers the op reads (checked against earlier deferred ops when it is deferred). */
  readonly reads: readonly GpuBuffer[];
  /** Records the op's dispatches. */
  emit(): void;
}

interface UniformSlot {
  readonly id: number;
  readonly arena: UniformArena;
  readonly offset: number;
  readonly words: number;
}

interface UniformArena {
  readonly buffer: GPUBuffer;
  readonly words: Uint32Array;
  used: number;
  dirtyFrom: number;
  dirtyTo: number;
}

/** Bind groups by (layout, uniform slot, buffer ids…), as a trie of numeric maps: no key strings per dispatch. */
interface BindGroupNode {
  group?: GPUBindGroup;
  next?: Map<number, BindGroupNode>;
}

interface CompiledProgram {
  readonly pipeline: GPUComputePipeline;
  readonly layoutKey: string;
  readonly layout: GPUBindGroupLayout;
  readonly uniformSize: number;
}

const ARENA_BYTES = 256 * 1024;
const MAX_ARENAS = 4;
const MAX_BIND_GROUPS_CACHED = 8192;
const MAX_PENDING = 4;
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
  private readonly pipelines = new Map<string, CompiledProgram>();
  private byProgram = new WeakMap<Program, CompiledProgram>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pipelineLayouts = new Map<string, GPUPipelineLayout>();
  /** One trie root per bind group layout (keyed like `layouts`). */
  private bindGroups = new Map<string, BindGroupNode>();
  private bindGroupCount = 0;
  private readonly arenas: UniformArena[] = [];
  private slots = new Map<number, UniformSlot | UniformSlot[]>();
  private nextSlotId = 1;
  private readonly slotAlign: number;
  private readonly arenaBytes: number;
  private readonly scratchWords = new Uint32Array(1024);
  private pending: PendingOp[] = [];
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passPipeline: GPUComputePipeline | null = null;
  private passBindGroup: GPUBindGroup | null = null;
  private batchDispatches = 0;
  private pendingError: Error | null = null;
  private lostError: DeviceLostError | null = null;
  private disposed = false;
  private readonly stagingFree: GPUBuffer[] = [];
  private readonly onUncaptured = (ev: Event): void => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    this.record(new GpuValidationError(`WebGPU error: ${err.message}`));
  };
  /** Resolves when the device is lost (or destroyed); used to tell a lost device from a failed map. */
  readonly lost: Promise<DeviceLostError>;

  constructor(
    readonly device: GPUDevice,
    options: { maxPoolBytes?: number; uniformArenaBytes?: number } = {},
  ) {
    this.arenaBytes = options.uniformArenaBytes ?? ARENA_BYTES;
    this.pool = new BufferPool(
      (size, usage) => this.createBuffer(size, usage),
      options.maxPoolBytes ?? 1 << 30,
      () => this.clearBindGroups(),
    );
    this.limits = copyLimits(device.limits);
    this.slotAlign = Math.max(16, this.limits.minUniformBufferOffsetAlignment);
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

  private bindGroupLayout(outputs: number, inputs: number): { key: string; layout: GPUBindGroupLayout } {
    const key = `${outputs}:${inputs}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: ShaderStageCompute, buffer: { type: 'uniform' } }];
      for (let i = 0; i < outputs + inputs; i++) {
        entries.push({
          binding: i + 1,
          visibility: ShaderStageCompute,
          buffer: { type: i < outputs ? 'storage' : 'read-only-storage' },
        });
      }
      layout = this.device.createBindGroupLayout({ label: `dora ${key}`, entries });
      this.layouts.set(key, layout);
      this.pipelineLayouts.set(key, this.device.createPipelineLayout({ bindGroupLayouts: [layout] }));
    }
    return { key, layout };
  }

  compile(program: Program): CompiledProgram {
    // Memoized programs are the same object on every call: skip hashing their key.
    let compiled = this.byProgram.get(program) ?? this.pipelines.get(program.key);
    if (compiled) return compiled;
    const { key: layoutKey, layout } = this.bindGroupLayout(program.outputs, program.inputs);
    // `enable` directives must precede every declaration, the uniform struct included.
    const body = program.source();
    const enables = body.match(/^enable [^;]+;$/gm) ?? [];
    const code = `${enables.join('\n')}\n${uniformStructWgsl(program.uniforms)}\n${body.replace(/^enable [^;]+;$/gm, '')}`;
    if (typeof process !== 'undefined' && process.env?.DORA_WEBGPU_DUMP_SHADERS) {
      console.error(`// ---- ${program.name} (${program.key})\n${code}`);
    }
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label: program.name, code });
    const pipeline = this.device.createComputePipeline({
      label: program.name,
      layout: this.pipelineLayouts.get(layoutKey)!,
      compute: { module, entryPoint: 'main' },
    });
    void this.device.popErrorScope().then((err) => {
      if (err) this.record(new GpuValidationError(`program '${program.name}' (${program.key}) failed to compile: ${err.message}`), true);
    });
    compiled = { pipeline, layoutKey, layout, uniformSize: uniformBytes(program.uniforms) };
    this.pipelines.set(program.key, compiled);
    this.byProgram.set(program, compiled);
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

  // ---- uniform slots

  /** The slot holding exactly these parameter words (`scratchWords[0, words)`), written once per batch at most. */
  private uniformSlot(words: number): UniformSlot {
    const w = this.scratchWords;
    let h = 0x811c9dc5 ^ words;
    for (let i = 0; i < words; i++) h = Math.imul(h ^ w[i]!, 0x01000193);
    const found = this.slots.get(h);
    if (found) {
      const list = Array.isArray(found) ? found : [found];
      for (const slot of list) if (slot.words === words && this.sameWords(slot, words)) return slot;
    }
    const slot = this.allocSlot(words);
    slot.arena.words.set(w.subarray(0, words), slot.offset / 4);
    slot.arena.dirtyFrom = Math.min(slot.arena.dirtyFrom, slot.offset);
    slot.arena.dirtyTo = Math.max(slot.arena.dirtyTo, slot.offset + words * 4);
    if (!found) this.slots.set(h, slot);
    else if (Array.isArray(found)) found.push(slot);
    else this.slots.set(h, [found, slot]);
    this.stats.uniformSlots++;
    return slot;
  }

  private sameWords(slot: UniformSlot, words: number): boolean {
    const a = slot.arena.words;
    const base = slot.offset / 4;
    for (let i = 0; i < words; i++) if (a[base + i] !== this.scratchWords[i]) return false;
    return true;
  }

  private allocSlot(words: number): UniformSlot {
    const bytes = Math.ceil((words * 4) / this.slotAlign) * this.slotAlign;
    let arena = this.arenas.find((a) => a.used + bytes <= this.arenaBytes);
    if (!arena && this.arenas.length < MAX_ARENAS) {
      const buffer = this.device.createBuffer({
        label: 'dora uniforms',
        size: this.arenaBytes,
        usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
      });
      arena = { buffer, words: new Uint32Array(this.arenaBytes / 4), used: 0, dirtyFrom: this.arenaBytes, dirtyTo: 0 };
      this.arenas.push(arena);
    }
    if (!arena) {
      // Every slot is taken (parameters that change on every call): submit what uses them, then recycle.
      // Later queue writes are ordered after the submitted work, so overwriting the slots is safe.
      this.submit();
      this.slots.clear();
      this.clearBindGroups();
      this.stats.uniformSlots = 0;
      for (const a of this.arenas) a.used = 0;
      arena = this.arenas[0]!;
    }
    const slot = { id: this.nextSlotId++, arena, offset: arena.used, words };
    arena.used += bytes;
    return slot;
  }

  private writeUniforms(): void {
    for (const a of this.arenas) {
      if (a.dirtyTo <= a.dirtyFrom) continue;
      this.device.queue.writeBuffer(a.buffer, a.dirtyFrom, a.words, a.dirtyFrom / 4, (a.dirtyTo - a.dirtyFrom) / 4);
      a.dirtyFrom = this.arenaBytes;
      a.dirtyTo = 0;
    }
  }

  // ---- deferred ops

  /**
   * Holds `op` back (see the file comment). Earlier deferred ops whose outputs it reads are emitted first,
   * so a deferred op never depends on another one.
   */
  defer(op: PendingOp): void {
    this.check();
    this.emitReaders(op.reads);
    this.pending.push(op);
    if (this.pending.length > MAX_PENDING) this.pending.shift()!.emit();
  }

  /** Whether a deferred op that `match` accepts exists. */
  hasPending(match: (op: PendingOp) => boolean): boolean {
    return this.pending.some(match);
  }

  /** Removes and returns the first deferred op `match` accepts: the caller fuses it into its own dispatch. */
  takePending(match: (op: PendingOp) => boolean): PendingOp | null {
    const i = this.pending.findIndex(match);
    if (i < 0) return null;
    this.stats.fused++;
    return this.pending.splice(i, 1)[0]!;
  }

  /** Emits every deferred op that writes one of `buffers`. */
  private emitReaders(buffers: readonly GpuBuffer[]): void {
    if (this.pending.length === 0) return;
    for (let i = 0; i < this.pending.length; ) {
      const op = this.pending[i]!;
      if (op.writes.some((b) => buffers.includes(b))) {
        this.pending.splice(i, 1);
        op.emit();
      } else {
        i++;
      }
    }
  }

  /** Records every deferred op now (without submitting). */
  flushDeferred(): void {
    this.check();
    this.emitAll();
  }

  private emitAll(): void {
    while (this.pending.length > 0) this.pending.shift()!.emit();
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
    if (this.pending.length > 0) this.emitReaders(call.inputs);
    const [x, y = 1, z = 1] = call.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const compiled = this.compile(call.program);
    const words = compiled.uniformSize / 4;
    this.scratchWords.fill(0, 0, words);
    packUniforms(call.program.uniforms, call.scalars ?? {}, call.dims ?? [], this.scratchWords, 0);
    const slot = this.uniformSlot(words);
    const group = this.bindGroup(compiled, slot, call);
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

  private bindGroup(compiled: CompiledProgram, slot: UniformSlot, call: DispatchCall): GPUBindGroup {
    let node = this.bindGroups.get(compiled.layoutKey);
    if (!node) this.bindGroups.set(compiled.layoutKey, (node = {}));
    node = this.child(node, slot.id);
    for (const b of call.outputs) node = this.child(node, b.id);
    for (const b of call.inputs) node = this.child(node, b.id);
    if (node.group) return node.group;
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: slot.arena.buffer, offset: slot.offset, size: compiled.uniformSize } },
    ];
    let binding = 1;
    for (const b of call.outputs) entries.push({ binding: binding++, resource: { buffer: b.buffer } });
    for (const b of call.inputs) entries.push({ binding: binding++, resource: { buffer: b.buffer } });
    const group = this.device.createBindGroup({ layout: compiled.layout, entries });
    if (this.bindGroupCount >= MAX_BIND_GROUPS_CACHED) {
      // Dropping the cache keeps only the group being returned.
      this.clearBindGroups();
      return group;
    }
    node.group = group;
    this.bindGroupCount++;
    this.stats.bindGroupsCreated++;
    return group;
  }

  private child(node: BindGroupNode, id: number): BindGroupNode {
    const next = node.next ?? (node.next = new Map());
    let c = next.get(id);
    if (!c) next.set(id, (c = {}));
    return c;
  }

  private clearBindGroups(): void {
    this.bindGroups = new Map();
    this.bindGroupCount = 0;
  }

  /** Submits everything recorded so far, deferred ops included. */
  flush(): void {
    this.emitAll();
    this.submit();
  }

  /** Submits what is recorded; deferred ops stay deferred (they reference no uniform slot yet). */
  private submit(): void {
    if (!this.encoder) {
      // Nothing unsubmitted can reference a parked buffer, so they are reusable now.
      this.afterSubmit();
      return;
    }
    this.endPass();
    this.writeUniforms();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.batchDispatches = 0;
    this.stats.submits++;
    this.afterSubmit();
  }

  private afterSubmit(): void {
    const pending = this.pending;
    this.pool.afterSubmit(pending.length ? (b) => pending.some((op) => op.reads.includes(b) || op.writes.includes(b)) : undefined);
  }

  // ---- data movement

  /** Writes host bytes into a storage buffer (ordered before any later submit). */
  write(target: GpuBuffer, bytes: ArrayBufferView): void {
    this.check();
    const len = bytes.byteLength;
    if (len === 0) return;
    if (len % 4 === 0) {
      this.device.queue.writeBuffer(target.buffer, 0, bytes.buffer, bytes.byteOffset, len);
    } else {
      const padded = new Uint8Array(Math.ceil(len / 4) * 4);
      padded.set(new Uint8Array(bytes.buffer, bytes.byteOffset, len));
      this.device.queue.writeBuffer(target.buffer, 0, padded);
    }
  }

  /** Copies `bytes` from the start of `src` to the host: one submit, one mapAsync. */
  async read(src: GpuBuffer, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    this.emitAll();
    const staging = this.takeStaging(size);
    this.ensurePass();
    this.endPass();
    this.encoder!.copyBufferToBuffer(src.buffer, 0, staging, 0, size);
    this.flush();
    this.stats.readbacks++;
    try {
      await staging.mapAsync(MapModeRead, 0, size);
    } catch (e) {
      staging.destroy();
      throw await this.explainFailure(e as Error, 'download');
    }
    const out = staging.getMappedRange(0, size).slice(0, bytes);
    staging.unmap();
    this.stagingFree.push(staging);
    this.check();
    return out;
  }

  private takeStaging(size: number): GPUBuffer {
    const i = this.stagingFree.findIndex((b) => b.size >= size && b.size <= size * 2);
    if (i >= 0) return this.stagingFree.splice(i, 1)[0]!;
    return this.createBuffer(Math.max(256, size), BufferUsage.MAP_READ | BufferUsage.COPY_DST);
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
    for (const s of this.stagingFree) s.destroy();
    this.stagingFree.length = 0;
    for (const a of this.arenas) a.buffer.destroy();
    this.arenas.length = 0;
    this.pending = [];
    this.pipelines.clear();
    this.byProgram = new WeakMap();
    this.clearBindGroups();
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
