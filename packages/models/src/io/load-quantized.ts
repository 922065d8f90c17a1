/**
 * Quantized loading (docs/qdora.md): a checkpoint already in transformers' bitsandbytes layout loads as
 * is, and `loadModel(..., { quantize })` quantizes a float checkpoint's Linear layers while streaming it.
 * Everything that can be checked from headers and the small quant-state tensors is checked for every
 * module before any weight is read.
 */
import {
  type Backend,
  checkQuantizeOptions,
  Conv1D,
  type HostTensor,
  Linear,
  type Module,
  type Parameter,
  type QuantFormat,
  QuantizationError,
  type QuantizedHost,
  QuantizedLinear,
  QuantizedWeight,
  quantizableLinears,
  quantizeHost,
  type SafetensorsReader,
  type TensorOrigin,
  toFloat32,
} from '@dorajs/core';
import type { Architecture } from '../architectures.js';
import {
  type BnbModule,
  bnbHost,
  checkBnbModule,
  checkQuantMap,
  findBnbModules,
  type HeaderEntry,
  parseQuantState,
  type QuantStateJson,
  QuantStateError,
} from './bnb.js';

/** A format, or a format with bitsandbytes' 4-bit options (transformers' defaults: block 64, no double quant). */
export type QuantizeSpec = QuantFormat | { readonly format: QuantFormat; readonly blocksize?: number; readonly doubleQuant?: boolean };

/** One bitsandbytes module of the checkpoint, matched to the model's Linear and checked. */
export interface PlannedBnb {
  readonly mod: BnbModule;
  /** The model path of the Linear it replaces. */
  readonly path: string;
  readonly linear: Linear;
  readonly state: QuantStateJson | null;
  /** Bytes of the packed form on the backend. */
  readonly bytes: number;
}

export interface BnbPlan {
  readonly modules: readonly PlannedBnb[];
  /** `${file}\0${key}` of every key the modules own → the model path and the weight's original torch dtype. */
  readonly byKey: ReadonlyMap<string, { path: string; dtype: string }>;
  /** The Linear weights these modules fill. */
  readonly weights: ReadonlySet<Parameter>;
}

/** Finds, matches and checks every bitsandbytes module (headers and quant-state tensors only). */
export async function planBnb(
  model: Module,
  arch: Architecture,
  files: ReadonlyMap<string, SafetensorsReader>,
  config: Readonly<Record<string, unknown>>,
): Promise<BnbPlan> {
  const headers = new Map<string, Map<string, HeaderEntry>>();
  for (const [file, reader] of files) headers.set(file, new Map(reader.keys.map((k) => [k, reader.entry(k)])));
  const found = findBnbModules(headers, (f) => files.get(f)!.file);
  const modules: PlannedBnb[] = [];
  const byKey = new Map<string, { path: string; dtype: string }>();
  const weights = new Set<Parameter>();
  const configDtype = typeof config['torch_dtype'] === 'string' ? config['torch_dtype'] : 'float32';
  for (const mod of found) {
    const reader = files.get(mod.file)!;
    const path = modulePath(model, arch, mod.prefix);
    const stateKey = mod.keys[mod.keys.length - 1]!;
    if (path === null) throw new QuantStateError('belongs to no Linear layer of the model', reader.file, stateKey);
    const linear = model.getSubmodule(path);
    if (!(linear instanceof Linear)) {
      throw new QuantStateError(`is quantized but '${path}' is a ${linear.typeName}, not a Linear`, reader.file, `${mod.prefix}.weight`);
    }
    let state: QuantStateJson | null = null;
    if (mod.format !== 'int8') {
      const e = reader.entry(stateKey);
      if (e.dtype !== 'U8' || e.shape.length !== 1) {
        throw new QuantStateError(`is ${e.dtype} [${e.shape.join(', ')}], expected 1-D U8 (JSON bytes)`, reader.file, stateKey);
      }
      if (e.end - e.begin > 4096)
        throw new QuantStateError(`is ${e.end - e.begin} bytes; a quant state is a few hundred`, reader.file, stateKey);
      const bytes = (await reader.read(stateKey)).data as Uint8Array;
      state = parseQuantState(bytes, reader.file, stateKey, mod.format);
    }
    checkBnbModule({ ...mod, file: reader.file }, headers.get(mod.file)!, state, [linear.outFeatures, linear.inFeatures]);
    if (mod.format !== 'int8') {
      const mapKey = `${mod.prefix}.weight.quant_map`;
      checkQuantMap((await reader.read(mapKey)).data as Float32Array, mod.format, reader.file, mapKey);
    }
    const formatKey = `${mod.prefix}.weight_format`;
    if (mod.format === 'int8' && reader.has(formatKey)) {
      const v = ((await reader.read(formatKey)).data as Uint8Array)[0];
      if (v !== 0) throw new QuantStateError(`is ${v}: only bitsandbytes' row-major layout (0) is supported`, reader.file, formatKey);
    }
    let bytes = 0;
    for (const k of mod.keys) {
      const e = reader.entry(k);
      bytes += e.end - e.begin;
      byKey.set(`${mod.file}\0${k}`, { path, dtype: state?.dtype ?? configDtype });
    }
    weights.add(linear.weight);
    modules.push({ mod, path, linear, state, bytes });
  }
  return { modules, byKey, weights };
}

/** The model path of the Linear a checkpoint prefix names (with or without the architecture's base prefix). */
function modulePath(model: Module, arch: Architecture, prefix: string): string | null {
  const params = model.stateDict();
  if (params.has(`${prefix}.weight`)) return prefix;
  if (params.has(`${arch.basePrefix}.${prefix}.weight`)) return `${arch.basePrefix}.${prefix}`;
  return null;
}

/** Reads, assembles and uploads every planned module, then swaps each Linear for a QuantizedLinear. */
export async function loadBnbModules(
  model: Module,
  plan: BnbPlan,
  files: ReadonlyMap<string, SafetensorsReader>,
  backend: Backend,
): Promise<void> {
  for (const m of plan.modules) {
    const reader = files.get(m.mod.file)!;
    const read = new Map<string, HostTensor>();
    for (const k of m.mod.keys) read.set(k, await reader.read(k));
    const host = bnbHost({ ...m.mod, file: reader.file }, read, m.state, [m.linear.outFeatures, m.linear.inFeatures]);
    swapIn(model, m.path, m.linear, QuantizedWeight.fromHost(host, backend, `${reader.file}: ${m.mod.prefix}.weight`));
  }
}

function swapIn(model: Module, path: string, layer: Linear | Conv1D, weight: QuantizedWeight): void {
  const q = new QuantizedLinear(weight, layer.bias);
  q.training = layer.training;
  layer.weight.dispose();
  model.setSubmodule(path, q);
}

/** A layer to quantize while streaming. */
export interface QuantizeTarget {
  readonly path: string;
  readonly layer: Linear | Conv1D;
  readonly options: { readonly format: QuantFormat; readonly blocksize?: number; readonly doubleQuant?: boolean };
  /** Bytes of the packed form. */
  readonly bytes: number;
}

/** Normalises and checks `quantize` (unknown formats and options refused before anything is read). */
export function quantizeOptionsOf(spec: QuantizeSpec | undefined): QuantizeTarget['options'] | null {
  if (spec === undefined) return null;
  const o = typeof spec === 'string' ? { format: spec } : spec;
  if (typeof o !== 'object' || o === null)
    throw new QuantizationError(`'${String(spec)}' is not a quantization (nf4, fp4 or int8)`, 'quantize');
  checkQuantizeOptions(o, 'quantize');
  return o;
}

/** The weights `quantize` converts (by Parameter), minus modules the checkpoint has quantized already. */
export function quantizeTargets(model: Module, spec: QuantizeSpec | undefined, bnb: BnbPlan): Map<Parameter, QuantizeTarget> {
  const options = quantizeOptionsOf(spec);
  const out = new Map<Parameter, QuantizeTarget>();
  if (!options) return out;
  const done = new Set(bnb.modules.map((m) => m.path));
  for (const [path, layer] of quantizableLinears(model)) {
    if (done.has(path)) continue;
    const n = layer.inFeatures * layer.outFeatures;
    out.set(layer.weight, { path, layer, options, bytes: packedBytes(options, layer.outFeatures, n) });
  }
  return out;
}

function packedBytes(o: QuantizeTarget['options'], rows: number, n: number): number {
  if (o.format === 'int8') return n + 4 * rows;
  const blocks = Math.ceil(n / (o.blocksize ?? 64));
  // Double quantization: one code per block, a float per 256 blocks and the 256-entry map.
  return Math.ceil(n / 2) + (o.doubleQuant ? blocks + 4 * Math.ceil(blocks / 256) + 1024 : 4 * blocks);
}

/** Quantizes one streamed weight on the host (a Conv1D's [in, out] transposed first, as transformers does) and swaps its layer. */
export function quantizeStreamed(model: Module, target: QuantizeTarget, host: HostTensor, backend: Backend, origin: TensorOrigin): void {
  let values = toFloat32(host, origin);
  const rows = target.layer.outFeatures;
  const cols = target.layer.inFeatures;
  if (target.layer instanceof Conv1D) {
    const t = new Float32Array(rows * cols);
    for (let i = 0; i < cols; i++) for (let o = 0; o < rows; o++) t[o * cols + i] = values[i * rows + o]!;
    values = t;
  }
  const name = `${origin.file}: ${origin.key}`;
  const packed: QuantizedHost = quantizeHost(values, [rows, cols], { ...target.options, name });
  const weight = QuantizedWeight.fromHost(packed, backend, name);
  swapIn(model, target.path, target.layer, weight);
}
