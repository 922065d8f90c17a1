/**
 * Writes a model as a Hugging Face folder shaped like the checkpoint it was loaded from: the same tensor
 * names, file split (single file or shards + index), shapes and dtypes (float32 values narrowed back to
 * BF16/F16 where the checkpoint had them), plus config.json and the tokenizer files. Everything is
 * written into a temporary sibling folder that is renamed into place at the end, so a failure leaves no
 * output folder at all.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DoraError, type HostTensor, type Module, type Parameter, sameShape, type SafetensorsDType, toHostTensor } from '@dorajs/core';
import { openSafetensors, saveSafetensors } from '@dorajs/core/node';
import { MissingWeightError, ModelFolderError, OutputExistsError, WeightShapeError } from '../errors.js';
import type { CheckpointInfo, CheckpointTensor } from './load-model.js';
import { COMPANION_FILES, CONFIG_FILE, WEIGHTS_INDEX_FILE } from './model-folder.js';

export interface SaveModelOptions {
  /** The checkpoint whose names, layout and dtypes to reproduce (from `loadModel`). */
  readonly like: CheckpointInfo;
}

export async function saveModel(model: Module, outDir: string, options: SaveModelOptions): Promise<void> {
  const like = options.like;
  const target = resolve(outDir);
  const params = matchParameters(model, like);
  await refuseNonEmpty(target);
  await mkdirOrThrow(dirname(target));
  const temp = join(dirname(target), `.${basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
  await mkdirOrThrow(temp);
  try {
    for (const file of like.layout.files) {
      const tensors = await hostTensorsFor(file, like, params);
      const metadata = like.fileMetadata.get(file);
      await saveSafetensors(join(temp, file), tensors, metadata && Object.keys(metadata).length > 0 ? metadata : undefined);
    }
    if (like.layout.kind === 'sharded')
      await writeDurably(join(temp, WEIGHTS_INDEX_FILE), `${JSON.stringify(like.layout.index, null, 2)}\n`);
    await writeDurably(join(temp, CONFIG_FILE), like.config.text);
    for (const name of COMPANION_FILES) await copyIfPresent(join(like.dir, name), join(temp, name));
    await rename(temp, target).catch((error: Error) => {
      throw new ModelFolderError(`cannot move the finished folder into place: ${error.message}`, target);
    });
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error instanceof DoraError ? error : new ModelFolderError(`cannot write: ${(error as Error).message}`, target);
  }
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

async function refuseNonEmpty(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) return;
  if (!info.isDirectory() || (await readdir(dir)).length > 0) throw new OutputExistsError(dir);
}

async function mkdirOrThrow(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new ModelFolderError(`cannot create folder: ${(error as Error).message}`, dir);
  }
}

async function writeDurably(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function copyIfPresent(from: string, to: string): Promise<void> {
  try {
    await copyFile(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new ModelFolderError(`cannot copy: ${(error as Error).message}`, from);
  }
}
