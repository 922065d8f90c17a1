/**
 * Writes a model as a Hugging Face folder shaped like the checkpoint it was loaded from: the same tensor
 * names, file split (single file or shards + index), shapes and dtypes (float32 values narrowed back to
 * BF16/F16 where the checkpoint had them), plus config.json and the tokenizer files. The folder is
 * written whole by core's `replaceFolder`: a failure or a kill leaves no output folder (or the old empty
 * one), and every I/O failure is an OutputError naming the output path.
 */
import { join, resolve } from 'node:path';
import { type HostTensor, type Module, type Parameter, sameShape, type SafetensorsDType, toHostTensor } from '@dorajs/core';
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
      for (const file of like.layout.files) {
        const tensors = await hostTensorsFor(file, like, params);
        const metadata = like.fileMetadata.get(file);
        await saveSafetensors(join(temp, file), tensors, metadata && Object.keys(metadata).length > 0 ? metadata : undefined, { fs });
      }
      if (like.layout.kind === 'sharded')
        await writeFileDurable(join(temp, WEIGHTS_INDEX_FILE), `${JSON.stringify(like.layout.index, null, 2)}\n`, fs);
      await writeFileDurable(join(temp, CONFIG_FILE), like.config.text, fs);
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
    if (t.parameter === null) continue;
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
): Promise<Map<string, HostTensor>> {
  const entries = like.tensors.filter((t) => t.file === file);
  const out = new Map<string, HostTensor>();
  const passthrough: CheckpointTensor[] = [];
  for (const t of entries) {
    if (t.parameter === null) passthrough.push(t);
    else out.set(t.key, await toHostTensor(params.get(t.parameter)!, t.dtype as SafetensorsDType));
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
