/**
 * Loads a Hugging Face model folder. Every check that needs only headers (architecture, missing keys,
 * shapes, dtypes) runs before any tensor data is read; then tensors are streamed one at a time — read,
 * widened to float32, uploaded, released — so the host never holds more than one tensor of the
 * checkpoint, and the backend holds each weight once.
 */
import {
  type Backend,
  checkFits,
  Conv1D,
  Embedding,
  FileError,
  type FileSource,
  DEFAULT_CHUNK_BYTES,
  Linear,
  type Parameter,
  type ProgressCallback,
  type Random,
  resolveSource,
  SafetensorsError,
  SafetensorsReader,
  type SourceInput,
  type SourceOptions,
  sameShape,
  type Tensor,
  tensorWriter,
  toFloat32,
} from '@dorajs/core';
import { architectureFor, type Architecture, modelTypeOf } from '../architectures.js';
import { MissingWeightError, WeightDTypeError, WeightShapeError } from '../errors.js';
import type { CausalLM } from '../shared/causal-lm.js';
import { findWeights, type ModelConfigFile, readModelConfig, WEIGHTS_INDEX_FILE, type WeightsLayout } from './model-folder.js';
import { unloadedWeights } from './unloaded-weights.js';
import { loadBnbModules, planBnb, type QuantizeSpec, quantizeStreamed, quantizeTargets } from './load-quantized.js';

export type { QuantizeSpec } from './load-quantized.js';

/** One tensor of the checkpoint as the file stores it. */
export interface CheckpointTensor {
  readonly key: string;
  /** File name inside the model folder. */
  readonly file: string;
  /** safetensors dtype in the file (F32, BF16, …): what a saver writes back. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** The model's state-dict name this tensor fills, or null (buffers and other non-parameters). */
  readonly parameter: string | null;
  /**
   * For a part of a bitsandbytes-quantized weight: the model path of the Linear it loads into, and the
   * torch dtype the weight had before quantization (what its quant state records).
   */
  readonly quantized?: { readonly path: string; readonly dtype: string };
}

/** Everything needed to write a checkpoint with the same names, layout and dtypes. */
export interface CheckpointInfo {
  /** The folder the model was loaded from, as errors name it (an absolute path, a URL, 'org/name@revision'). */
  readonly dir: string;
  /** Where its files are read from. */
  readonly source: FileSource;
  readonly modelType: string;
  readonly config: ModelConfigFile;
  readonly layout: WeightsLayout;
  /** Each weights file's `__metadata__`. */
  readonly fileMetadata: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** File by file, in each file's order. */
  readonly tensors: readonly CheckpointTensor[];
  /** Keys that fill no parameter and are not known buffers (kept, not loaded): worth a warning. */
  readonly unexpectedKeys: readonly string[];
}

export interface LoadedModel {
  /** In eval mode, as transformers' from_pretrained leaves it. */
  readonly model: CausalLM;
  readonly checkpoint: CheckpointInfo;
}

export interface LoadModelOptions extends SourceOptions {
  readonly backend: Backend;
  /** Called after each tensor is loaded: bytes and tensors so far, of the totals. */
  readonly onProgress?: ProgressCallback;
  /** Drives dropout during training; default: core's default generator. */
  readonly random?: Random;
  /**
   * Told once, naming them, about checkpoint tensors the model does not use (as transformers warns);
   * default: console.warn.
   */
  readonly onWarning?: (message: string) => void;
  /**
   * Keep a BF16/F16 checkpoint's Linear, Conv1D and Embedding weights 2 bytes per weight on the backend
   * (frozen; the narrow kernels widen them in registers, docs/narrow-weights.md). Default false: widen
   * every weight to float32, as before.
   */
  readonly keepWidth?: boolean;
  /**
   * Bytes to keep free beside the weights (a KV cache, activations): with the weights they must fit the
   * backend's bounded memory (the CPU backend's wasm heap), checked before any tensor is read.
   */
  readonly reserveBytes?: number;
  /**
   * Quantize the Linear layers transformers' bitsandbytes integration would (every one but `lm_head` and
   * layers tied to an embedding; never embeddings or norms) to 'nf4', 'fp4' or 'int8' while streaming:
   * each weight is read, quantized on the host and uploaded packed, so the float model never exists.
   * A checkpoint already in bitsandbytes' layout loads quantized without this option.
   */
  readonly quantize?: QuantizeSpec;
  /**
   * Most bytes read at once (one HTTP Range request, one file read; default 8 MiB, core's
   * DEFAULT_CHUNK_BYTES): each tensor is read in pieces of this size and written straight into its backend
   * storage (the backend's `beginUpload`), so neither the host nor the browser's network stack holds a
   * whole tensor. Quantized layers are still read whole (they are quantized on the host).
   */
  readonly chunkBytes?: number;
}

const defaultWarning = (message: string) => console.warn(`[@dorajs/models] ${message}`);

/** Slack for weights a model builds and then ties to another (a tied lm_head), and for tiny models. */
const BUDGET_SLACK_VALUES = 2 ** 20;

/**
 * Loads a Hugging Face model folder from anywhere: a folder on disk (Node; made absolute), an http(s) URL
 * (one Range request per tensor), a Hub id ('org/name' with `revision`, `endpoint`, `accessToken`), dropped
 * Files, a directory handle (OPFS) or any FileSource — core's resolveSource says how a string is read.
 */
export async function loadModel(folder: SourceInput, options: LoadModelOptions): Promise<LoadedModel> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) {
    throw new RangeError(`loadModel: chunkBytes must be a positive integer, got ${options.chunkBytes}`);
  }
  const source = await resolveSource(folder, options);
  const dir = source.name;
  const config = await readModelConfig(source);
  const modelType = modelTypeOf(config.json, config.path);
  const arch = architectureFor(modelType, config.path);
  const layout = await findWeights(source);
  const files = new Map<string, SafetensorsReader>();
  let model: CausalLM | undefined;
  try {
    for (const file of layout.files) files.set(file, await openWeights(source, file));
    const budget = {
      values: 2 * storedValues(files) + BUDGET_SLACK_VALUES,
      config: config.path,
      checkpoint: source.describe(layout.files[0]!),
    };
    model = arch.create(config.json, config.path, unloadedWeights(options.random, budget));
    // bitsandbytes modules (headers and quant-state JSON only) and the layers to quantize: all checked first.
    const bnb = await planBnb(model, arch, files, config.json);
    const targets = quantizeTargets(model, options.quantize, bnb);
    const plan = planLoad(model, arch, layout, files, source, bnb);
    const narrow = options.keepWidth ? narrowableWeights(model) : new Set<Parameter>();
    const keeps = (t: CheckpointTensor, p: Parameter) => narrow.has(p) && (t.dtype === 'BF16' || t.dtype === 'F16');
    const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
    checkFits(
      options.backend,
      [
        ...plan.loads.map(({ tensor, parameter }) => ({
          name: tensor.key,
          bytes: targets.get(parameter)?.bytes ?? numel(tensor.shape) * (keeps(tensor, parameter) ? 2 : 4),
        })),
        ...bnb.modules.map((m) => ({ name: `${m.mod.prefix}.weight`, bytes: m.bytes })),
      ],
      options.reserveBytes ?? 0,
      `the reserved ${options.reserveBytes ?? 0} bytes (reserveBytes)`,
    );
    // Reads go file by file in file order: a server that ignores Range streams each file once.
    const bytesOf = (t: CheckpointTensor) => {
      const e = files.get(t.file)!.entry(t.key);
      return e.end - e.begin;
    };
    const progress = { loadedBytes: 0, totalBytes: 0, loadedTensors: 0, totalTensors: plan.loads.length };
    for (const l of plan.loads) progress.totalBytes += bytesOf(l.tensor);
    // Every streamed tensor's storage, in load order: lets a backend size what it allocates (a hint).
    options.backend.planUploads?.(
      plan.loads
        .filter(({ parameter }) => !targets.has(parameter))
        .map(({ tensor: t, parameter }) => ({
          shape: t.shape,
          dtype: keeps(t, parameter) ? (t.dtype === 'BF16' ? 'bfloat16' : 'float16') : 'float32',
        })),
    );
    for (const { tensor: t, parameter } of plan.loads) {
      const reader = files.get(t.file)!;
      const target = targets.get(parameter);
      if (target) {
        const host = await reader.read(t.key);
        // Quantized on the host, uploaded packed: the float weight never reaches the backend.
        quantizeStreamed(model, target, host, options.backend, { file: reader.file, key: t.key });
        progress.loadedBytes += bytesOf(t);
        progress.loadedTensors += 1;
        options.onProgress?.({ ...progress, file: reader.file });
        continue;
      }
      const value = await streamTensor(reader, t.key, options.backend, keeps(t, parameter), chunkBytes);
      parameter.assign(value, { changeDtype: keeps(t, parameter) });
      value.dispose();
      progress.loadedBytes += bytesOf(t);
      progress.loadedTensors += 1;
      options.onProgress?.({ ...progress, file: reader.file });
    }
    await loadBnbModules(model, bnb, files, options.backend);
    const fileMetadata = new Map([...files].map(([name, f]) => [name, f.metadata]));
    if (plan.unexpectedKeys.length > 0) (options.onWarning ?? defaultWarning)(unusedWarning(plan.unexpectedKeys, dir));
    return {
      model: model.eval(),
      checkpoint: { dir, source, modelType, config, layout, fileMetadata, tensors: plan.tensors, unexpectedKeys: plan.unexpectedKeys },
    };
  } catch (error) {
    // Cleanup must never replace the error that explains the failure.
    try {
      model?.dispose();
    } catch {
      // A half-built model may not dispose cleanly; the original error is what matters.
    }
    throw error;
  } finally {
    for (const f of files.values()) await f.close().catch(() => {});
  }
}

/**
 * One float tensor of the file into backend storage, piece by piece: kept 2 bytes wide (`keep`, BF16/F16 in
 * the file), else widened to float32 piece by piece. The storage is freed if a read fails.
 */
async function streamTensor(reader: SafetensorsReader, key: string, backend: Backend, keep: boolean, chunkBytes: number): Promise<Tensor> {
  const entry = reader.entry(key);
  const dtype = keep ? (entry.dtype === 'BF16' ? 'bfloat16' : 'float16') : 'float32';
  const writer = tensorWriter(backend, entry.shape, dtype);
  try {
    for await (const piece of reader.readChunks(
      key,
      keep || entry.dtype === 'F32' ? chunkBytes : Math.max(1, Math.floor(chunkBytes / 2)),
    )) {
      const values = keep || piece.dtype === 'F32' ? piece.data : toFloat32(piece, { file: reader.file, key });
      await writer.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    }
    return writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
}

/** Values stored across the checkpoint's files (from headers only). */
async function openWeights(source: FileSource, file: string): Promise<SafetensorsReader> {
  const reader = await source.open(file).catch((error: unknown) => {
    throw error instanceof FileError ? new SafetensorsError(error.reason, error.path) : error;
  });
  if (!reader) throw new SafetensorsError('cannot open: no such file', source.describe(file));
  return SafetensorsReader.from(reader);
}

function storedValues(files: ReadonlyMap<string, SafetensorsReader>): number {
  let total = 0;
  for (const f of files.values()) for (const key of f.keys) total += f.entry(key).shape.reduce((a, b) => a * b, 1);
  return total;
}

function unusedWarning(keys: readonly string[], dir: string): string {
  const shown = keys.slice(0, 20).map((k) => `'${k.length > 120 ? `${k.slice(0, 120)}…` : k}'`);
  const more = keys.length > 20 ? ` and ${keys.length - 20} more` : '';
  return `${dir}: ${keys.length} checkpoint tensor(s) are not used by the model: ${shown.join(', ')}${more} (kept, and written back when the model is saved)`;
}

/** Weights only ever read through linear / embedding / Conv1D (which take narrow weights). */
function narrowableWeights(model: CausalLM): Set<Parameter> {
  const out = new Set<Parameter>();
  for (const [, m] of model.namedModules()) {
    if (m instanceof Linear || m instanceof Embedding || m instanceof Conv1D) out.add(m.weight);
  }
  return out;
}

interface LoadPlan {
  readonly tensors: CheckpointTensor[];
  /** One read per distinct parameter (a tied weight stored under two keys is read once). */
  readonly loads: { tensor: CheckpointTensor; parameter: Parameter }[];
  readonly unexpectedKeys: string[];
}

const FLOAT_DTYPES = new Set(['F32', 'BF16', 'F16']);

/** Matches checkpoint keys to parameters using headers only; throws before any data is read. */
function planLoad(
  model: CausalLM,
  arch: Architecture,
  layout: WeightsLayout,
  files: ReadonlyMap<string, SafetensorsReader>,
  source: FileSource,
  bnb: { readonly byKey: ReadonlyMap<string, { path: string; dtype: string }>; readonly weights: ReadonlySet<Parameter> },
): LoadPlan {
  const params = model.stateDict();
  const tensors: CheckpointTensor[] = [];
  const loads: LoadPlan['loads'] = [];
  const filled = new Set<Parameter>();
  for (const [file, source] of files) {
    for (const key of source.keys) {
      // With an index, it decides which shard owns a key (a stray copy elsewhere is not read).
      if (layout.kind === 'sharded' && layout.weightMap.get(key) !== file) continue;
      const entry = source.entry(key);
      const packedInto = bnb.byKey.get(`${file}\0${key}`);
      if (packedInto !== undefined) {
        // A part of a bitsandbytes weight: loaded by load-quantized.ts, written back by save-model.ts.
        tensors.push({ key, file, dtype: entry.dtype, shape: entry.shape, parameter: null, quantized: packedInto });
        continue;
      }
      const name = params.has(key) ? key : params.has(`${arch.basePrefix}.${key}`) ? `${arch.basePrefix}.${key}` : null;
      const tensor: CheckpointTensor = { key, file, dtype: entry.dtype, shape: entry.shape, parameter: name };
      tensors.push(tensor);
      if (name === null) continue;
      const parameter = params.get(name)!;
      if (!sameShape(parameter.shape, entry.shape)) throw new WeightShapeError(key, source.file, parameter.shape, entry.shape);
      if (!FLOAT_DTYPES.has(entry.dtype)) throw new WeightDTypeError(key, source.file, entry.dtype);
      if (filled.has(parameter)) continue;
      filled.add(parameter);
      loads.push({ tensor, parameter });
    }
  }
  if (layout.kind === 'sharded') {
    for (const [key, file] of layout.weightMap) {
      if (!files.get(file)!.has(key)) throw new MissingWeightError(key, source.describe(file));
    }
  }
  const weightsFile = source.describe(layout.kind === 'single' ? layout.files[0] : WEIGHTS_INDEX_FILE);
  for (const p of bnb.weights) filled.add(p);
  for (const [name, parameter] of params) {
    if (!filled.has(parameter)) throw new MissingWeightError(name, weightsFile);
  }
  // Unknown keys are kept (a saver writes them back unchanged) and reported, as transformers warns.
  const unexpectedKeys = tensors.filter((t) => t.parameter === null && !arch.isBuffer(t.key)).map((t) => t.key);
  return { tensors, loads, unexpectedKeys };
}
