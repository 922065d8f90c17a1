/** Compiled pipelines, cached by program key (and by program object, skipping the key hash). */
import { ShaderStageCompute } from '../gpu-constants.js';
import { uniformBytes, uniformStructWgsl } from '../uniforms.js';
import type { Program } from './program.js';

export interface CompiledProgram {
  readonly pipeline: GPUComputePipeline;
  readonly layoutKey: string;
  readonly layout: GPUBindGroupLayout;
  readonly uniformSize: number;
}

export class PipelineCache {
  private readonly pipelines = new Map<string, CompiledProgram>();
  private byProgram = new WeakMap<Program, CompiledProgram>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pipelineLayouts = new Map<string, GPUPipelineLayout>();

  /** `onCompileError` receives a program's compile failure, which the device reports asynchronously. */
  constructor(
    private readonly device: GPUDevice,
    private readonly onCompileError: (message: string) => void,
  ) {}

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

  compile(program: Program, dumpShaders: boolean): CompiledProgram {
    // Memoized programs are the same object on every call: skip hashing their key.
    let compiled = this.byProgram.get(program) ?? this.pipelines.get(program.key);
    if (compiled) return compiled;
    const { key: layoutKey, layout } = this.bindGroupLayout(program.outputs, program.inputs);
    // `enable` directives must precede every declaration, the uniform struct included.
    const body = program.source();
    const enables = new Set(body.match(/^enable [^;]+;$/gm) ?? []);
    const code = `${[...enables].join('\n')}\n${uniformStructWgsl(program.uniforms)}\n${body.replace(/^enable [^;]+;$/gm, '')}`;
    if (dumpShaders) console.error(`// ---- ${program.name} (${program.key})\n${code}`);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label: program.name, code });
    const pipeline = this.device.createComputePipeline({
      label: program.name,
      layout: this.pipelineLayouts.get(layoutKey)!,
      compute: { module, entryPoint: 'main' },
    });
    void this.device.popErrorScope().then((err) => {
      if (err) this.onCompileError(`program '${program.name}' (${program.key}) failed to compile: ${err.message}`);
    });
    compiled = { pipeline, layoutKey, layout, uniformSize: uniformBytes(program.uniforms) };
    this.pipelines.set(program.key, compiled);
    this.byProgram.set(program, compiled);
    return compiled;
  }

  get size(): number {
    return this.pipelines.size;
  }

  has(key: string): boolean {
    return this.pipelines.has(key);
  }

  /** Program keys in the order they were compiled. */
  keys(): string[] {
    return [...this.pipelines.keys()];
  }

  clear(): void {
    this.pipelines.clear();
    this.byProgram = new WeakMap();
  }
}
