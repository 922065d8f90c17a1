/**
 * safetensors files on disk (Node only). `openSafetensors` validates the header and then reads one
 * tensor's byte range at a time, straight into that tensor's storage, so a loader can stream a checkpoint
 * larger than it wants to hold twice. Only regular files are opened (a FIFO is refused, never waited on),
 * and the header is validated against the file size before any tensor is read. `saveSafetensors` writes
 * atomically (`atomic.ts`): readers never see half a file.
 */
import { FileError, SafetensorsError } from '../errors.js';
import { type AtomicWriteOptions, replaceFile } from './atomic.js';
import type { FileSystem } from './file-system.js';
import { openRegularFile } from './regular-file.js';
import type { HostTensor } from './host-tensor.js';
import type { SafetensorsContents } from './safetensors.js';
import { layoutSafetensors, type TensorsToWrite } from './safetensors-encode.js';
import { readHeader, SafetensorsReader } from './safetensors-reader.js';
import { fileHandleReader } from './source/node-directory.js';

/** An open safetensors file on disk whose tensors are read on demand. Call `close()` when done. */
export class SafetensorsFile extends SafetensorsReader {
  /** Opens `path` and validates its header against the file size; no tensor data is read yet. */
  static async open(path: string, fs?: FileSystem): Promise<SafetensorsFile> {
    const { handle, size } = await openRegularFile(path, fs).catch((error: unknown) => {
      throw error instanceof FileError ? new SafetensorsError(error.reason, path) : error;
    });
    const reader = fileHandleReader(path, handle, size);
    return new SafetensorsFile(reader, await readHeader(reader));
  }
}

export function openSafetensors(path: string, fs?: FileSystem): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path, fs);
}

/** Reads every tensor of `path` (each read straight into its own buffer). */
export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  const file = await SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, HostTensor>();
    for (const key of file.keys) tensors.set(key, await file.read(key));
    return { metadata: file.metadata, tensors };
  } finally {
    await file.close();
  }
}

/**
 * Writes `tensors` (and optional string `metadata`, e.g. `{ format: 'pt' }`) to `path` with the same
 * layout as the Python library. Atomic: on any failure an existing `path` is left untouched and an
 * OutputError names `path`.
 */
export async function saveSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const layout = layoutSafetensors(tensors, metadata, path);
  await replaceFile(path, [layout.header, ...layout.chunks], options);
}
