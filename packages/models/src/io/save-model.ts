/**
 * Writes a model as a Hugging Face folder shaped like the checkpoint it was loaded from: the same tensor
 * names, file split (single file or shards + index), shapes and dtypes (float32 values narrowed back to
 * BF16/F16 where the checkpoint had them), plus config.json and the tokenizer files. The folder is
 * written whole by core's `replaceFolder`: a failure or a kill leaves no output folder (or the old empty
 * one), and every I/O failure is an OutputError naming the output path.
 *
 * Quantized Linear layers (core's QuantizedLinear) are written in transformers' bitsandbytes layout
 * (`io/bnb.ts`) and config.json gets a `quantization_config`; a quantized checkpoint whose layers were
 * made dense again (`mergeAndUnload({ dtype })`) is written dense, without one.
 */
import { join, resolve } from 'node:path';
import {
  type HostTensor,
  Linear,
  type Module,
  type Parameter,
  QuantizedLinear,
  sameShape,
  type SafetensorsDType,
  toHostTensor,
} from '@dorajs/core';
import { bnbTensors, quantizationConfig, torchDtype } from './bnb.js';
import {
  checkOutputPath,
  errnoCode,
  type FileSystem,
  ioReason,
  nodeFileSystem,
  openSafetensors,
  recoverOutput,
  replaceFolder,
  saveSafetensors,
  writeFileDurable,
} from '@dorajs/core/node';
import { MissingWeightError, ModelFolderError, OutputExistsError, WeightShapeError } from '../errors.js';
import type { CheckpointInfo, CheckpointTensor } from './load-model.js';
import { COMPANION_FILES, CONFIG_FILE, WEIGHTS_INDEX_FILE } from './model-folder.js';

export interface SaveModelOptions {
  /** The checkpoint whose names, layout and dtypes to reproduce (from `loadModel`). */
  readonly like: CheckpointInfo;
  /** The file system to write with (tests inject faults). */
  readonly fs?: FileSystem;
  /** Told about leftovers of killed runs that were cleaned up. */
  readonly report?: (message: string) => void;
}

/**
 * Checks `outDir` before any work: it must not exist or be an empty folder, must be creatable and
 * writable, and may not be, contain or lie inside the source checkpoint folder.
 */
export async function checkModelOutput(outDir: string, like: CheckpointInfo, options: Omit<SaveModelOptions, 'like'> = {}): Promise<void> {
  const target = resolve(outDir);
  await recoverOutput(target, options);
  await refuseNonEmpty(target, options.fs ?? nodeFileSystem);
  await checkOutputPath(target, { kind: 'folder', inputs: [like.dir], fs: options.fs });
}

export async function saveModel(model: Module, outDir: string, options: SaveModelOptions): Promise<void> {
  const like = options.like;
  const fs = options.fs ?? nodeFileSystem;
  const target = resolve(outDir);
  const params = matchParameters(model, like);
  await checkModelOutput(target, like, options);
  await replaceFolder(
    target,
    async (temp) => {
      const weightMap = new Map<string, string>();
      for (const file of like.layout.files) {
        const tensors = await hostTensorsFor(file, like, params, model);
        for (const key of tensors.keys()) weightMap.set(key, file);
        const metadata = like.fileMetadata.get(file);
        await saveSafetensors(join(temp, file), tensors, metadata && Object.keys(metadata).length > 0 ? metadata : undefined, { fs });
      }
      if (like.layout.kind === 'sharded') {
        const index = { ...like.layout.index, weight_map: Object.fromEntries(weightMap) };
        await writeFileDurable(join(temp, WEIGHTS_INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`, fs);
      }
      await writeFileDurable(join(temp, CONFIG_FILE), configText(model, like), fs);
      for (const name of COMPANION_FILES) await copyIfPresent(join(like.dir, name), join(temp, name), fs);
    },
    { fs },
  );
}

/** Every parameter the checkpoint needs, checked (name and shape) before anything is written. */
function matchParameters(model: Module, like: CheckpointInfo): Map<string, Parameter> {
  const own = model.stateDict();
  const out = new Map<string, Parameter>();
  for (const t of like.tensors) {
    if (t.parameter === null || quantizedAt(model, t.parameter)) continue;
    const p = own.get(t.parameter);
    if (!p) throw new MissingWeightError(t.parameter, `model ${model.typeName} (merge and unload adapters before saving)`);
    if (!sameShape(p.shape, t.shape)) throw new WeightShapeError(t.key, `model ${model.typeName}`, p.shape, t.shape);
    out.set(t.parameter, p);
  }
  return out;
}

/** One file's tensors on the host: parameters narrowed to the stored dtype, other tensors copied as stored. */
async function hostTensorsFor(
  file: string,
  like: CheckpointInfo,
  params: ReadonlyMap<string, Parameter>,
  model: Module,
): Promise<Map<string, HostTensor>> {
  const entries = like.tensors.filter((t) => t.file === file);
  const out = new Map<string, HostTensor>();
  const passthrough: CheckpointTensor[] = [];
  for (const t of entries) {
    if (t.quantized) {
      // A bitsandbytes weight of the checkpoint: written from the model's layer at its `.weight` key.
      if (!t.key.endsWith('.weight')) continue;
      const layer = model.getSubmodule(t.quantized.path);
      const prefix = t.key.slice(0, -'.weight'.length);
      if (layer instanceof QuantizedLinear) {
        for (const [k, v] of bnbTensors(prefix, await layer.weight.toHost(), t.quantized.dtype)) out.set(k, v);
      } else if (layer instanceof Linear) {
        out.set(t.key, await toHostTensor(layer.weight, safetensorsDtype(t.quantized.dtype)));
      } else throw new MissingWeightError(`${t.quantized.path}.weight`, `model ${model.typeName}`);
    } else if (t.parameter === null) passthrough.push(t);
    else {
      const q = quantizedAt(model, t.parameter);
      if (q) {
        // Quantized at load time: transformers' layout in place of the float weight.
        for (const [k, v] of bnbTensors(t.key.slice(0, -'.weight'.length), await q.weight.toHost(), torchDtype(t.dtype))) out.set(k, v);
      } else out.set(t.key, await toHostTensor(params.get(t.parameter)!, t.dtype as SafetensorsDType));
    }
  }
  if (passthrough.length > 0) {
    const source = await openSafetensors(join(like.dir, file));
    try {
      for (const t of passthrough) out.set(t.key, await source.read(t.key));
    } finally {
      await source.close();
    }
  }
  return out;
}

async function refuseNonEmpty(dir: string, fs: FileSystem): Promise<void> {
  const info = await fs.stat(dir).catch(() => null);
  if (!info) return;
  if (!info.isDirectory() || (await fs.readdir(dir)).length > 0) throw new OutputExistsError(dir);
}

async function copyIfPresent(from: string, to: string, fs: FileSystem): Promise<void> {
  try {
    await fs.copyFile(from, to);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw new ModelFolderError(`cannot copy: ${ioReason(error)}`, from);
  }
}

/** The QuantizedLinear a `<path>.weight` parameter name now belongs to, if any. */
function quantizedAt(model: Module, parameter: string): QuantizedLinear | null {
  if (!parameter.endsWith('.weight')) return null;
  try {
    const m = model.getSubmodule(parameter.slice(0, -'.weight'.length));
    return m instanceof QuantizedLinear ? m : null;
  } catch {
    return null;
  }
}

function safetensorsDtype(torch: string): SafetensorsDType {
  return torch === 'bfloat16' ? 'BF16' : torch === 'float16' ? 'F16' : 'F32';
}

/**
 * config.json as loaded, unless the model's quantization differs from what it declares: then with
 * `quantization_config` set to transformers' BitsAndBytesConfig for the model's layers (or removed when
 * none is quantized any more).
 */
function configText(model: Module, like: CheckpointInfo): string {
  const q = model.namedModules().find(([, m]) => m instanceof QuantizedLinear)?.[1] as QuantizedLinear | undefined;
  const json = like.config.json as Record<string, unknown>;
  const has = json['quantization_config'] !== undefined;
  if (!q && !has) return like.config.text;
  const wanted = q ? quantizationConfig(q.format, q.weight.nested !== null, 'float32') : undefined;
  if (q && has) {
    const current = json['quantization_config'] as Record<string, unknown>;
    const same = ['_load_in_4bit', '_load_in_8bit', 'bnb_4bit_quant_type', 'bnb_4bit_use_double_quant'].every(
      (k) => current[k] === wanted![k],
    );
    if (same) return like.config.text;
  }
  const out: Record<string, unknown> = { ...json };
  if (wanted) out['quantization_config'] = wanted;
  else delete out['quantization_config'];
  return `${JSON.stringify(out, null, 2)}\n`;
}
