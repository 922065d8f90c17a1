/**
 * The GPU side of the backend: compiled pipelines cached by program key, bind groups cached by buffer
 * identity, dispatches recorded into one open compute pass and submitted lazily, and readback. Kernel
 * parameters go into one uniform buffer per batch at 256-byte dynamic offsets, so a dispatch costs no
 * buffer creation and, in steady state, no bind-group creation either.
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
}

interface CompiledProgram {
  readonly pipeline: GPUComputePipeline;
  readonly layoutKey: string;
  readonly layout: GPUBindGroupLayout;
  readonly uniformSize: number;
}

const UNIFORM_ALIGN = 256;
const UNIFORM_CAPACITY = 64 * 1024;
const MAX_BIND_GROUPS_CACHED = 8192;

export class GpuRuntime {
  readonly stats: RuntimeStats = { dispatches: 0, submits: 0, readbacks: 0, pipelines: 0, bindGroupsCreated: 0 };
  readonly pool: BufferPool;
  private readonly pipelines = new Map<string, CompiledProgram>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pipelineLayouts = new Map<string, GPUPipelineLayout>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private readonly uniformStaging = new Uint32Array(UNIFORM_CAPACITY / 4);
  private readonly uniformBuffer: GPUBuffer;
  private uniformUsed = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passPipeline: GPUComputePipeline | null = null;
  private pendingError: Error | null = null;
  private lostError: DeviceLostError | null = null;
  private disposed = false;
  private readonly stagingFree: GPUBuffer[] = [];
  // The typed-array form of setBindGroup skips a JS array conversion in Dawn's bindings.
  private readonly dynamicOffset = new Uint32Array(1);
  private readonly onUncaptured = (ev: Event): void => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    this.record(new GpuValidationError(`WebGPU error: ${err.message}`));
  };
  /** Resolves when the device is lost (or destroyed); used to tell a lost device from a failed map. */
  readonly lost: Promise<DeviceLostError>;

  constructor(
    readonly device: GPUDevice,
    options: { maxPoolBytes?: number } = {},
  ) {
    this.pool = new BufferPool(
      (size, usage) => this.createBuffer(size, usage),
      options.maxPoolBytes ?? 1 << 30,
      () => this.bindGroups.clear(),
    );
    this.uniformBuffer = device.createBuffer({
      label: 'dora uniforms',
      size: UNIFORM_CAPACITY,
      usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
    });
    device.addEventListener('uncapturederror', this.onUncaptured);
    this.lost = device.lost.then((info) => {
      const err = new DeviceLostError(info.reason ?? 'unknown', info.message);
      if (!this.disposed) this.lostError = err;
      return err;
    });
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

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
    const max = Math.min(this.device.limits.maxBufferSize, this.device.limits.maxStorageBufferBindingSize);
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
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: ShaderStageCompute, buffer: { type: 'uniform', hasDynamicOffset: true } },
      ];
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
    let compiled = this.pipelines.get(program.key);
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

  // ---- recording

  private ensurePass(uniformBytesNeeded: number): GPUComputePassEncoder {
    if (this.encoder && this.uniformUsed + uniformBytesNeeded > UNIFORM_CAPACITY) this.flush();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: 'dora batch' });
    if (!this.pass) {
      this.pass = this.encoder.beginComputePass();
      this.passPipeline = null;
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
      this.passPipeline = null;
    }
  }

  dispatch(call: DispatchCall): void {
    this.check();
    const [x, y = 1, z = 1] = call.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const compiled = this.compile(call.program);
    const slot = Math.ceil(compiled.uniformSize / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    const pass = this.ensurePass(slot);
    const offset = this.uniformUsed;
    packUniforms(call.program.uniforms, call.scalars ?? {}, call.dims ?? [], this.uniformStaging, offset / 4);
    this.uniformUsed += slot;
    if (this.passPipeline !== compiled.pipeline) {
      pass.setPipeline(compiled.pipeline);
      this.passPipeline = compiled.pipeline;
    }
    this.dynamicOffset[0] = offset;
    pass.setBindGroup(0, this.bindGroup(compiled, call), this.dynamicOffset, 0, 1);
    pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
  }

  private bindGroup(compiled: CompiledProgram, call: DispatchCall): GPUBindGroup {
    let key = `${compiled.layoutKey}|${compiled.uniformSize}`;
    for (const b of call.outputs) key += `,${b.id}`;
    for (const b of call.inputs) key += `,${b.id}`;
    let group = this.bindGroups.get(key);
    if (group) return group;
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.uniformBuffer, offset: 0, size: compiled.uniformSize } }];
    let binding = 1;
    for (const b of call.outputs) entries.push({ binding: binding++, resource: { buffer: b.buffer } });
    for (const b of call.inputs) entries.push({ binding: binding++, resource: { buffer: b.buffer } });
    group = this.device.createBindGroup({ layout: compiled.layout, entries });
    if (this.bindGroups.size >= MAX_BIND_GROUPS_CACHED) this.bindGroups = new Map();
    this.bindGroups.set(key, group);
    this.stats.bindGroupsCreated++;
    return group;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) {
      // Nothing unsubmitted can reference a parked buffer, so they are reusable now.
      this.pool.afterSubmit();
      return;
    }
    this.endPass();
    if (this.uniformUsed > 0) this.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformStaging, 0, this.uniformUsed / 4);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.uniformUsed = 0;
    this.stats.submits++;
    this.pool.afterSubmit();
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
    const staging = this.takeStaging(size);
    this.ensurePass(0);
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
    this.uniformBuffer.destroy();
    this.pipelines.clear();
    this.bindGroups.clear();
    if (destroyDevice) this.device.destroy();
  }
}
