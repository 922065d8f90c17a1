/**
 * Token ids for `dora run`: a JSON rectangular integer array [[…], …] or a safetensors file with key `ids`.
 * This reads the file; @dorajs/models' `tokenIds` validates (rectangular, integers, inside the vocabulary).
 * Only regular files are read (a named pipe is refused, never waited on). A safetensors file is opened
 * header first and only its `ids` tensor is read; a JSON file is streamed through `IdsJsonReader`, which
 * keeps only the ids accepted so far and stops at the first byte that cannot be valid.
 */
import { FileError, type HostTensor } from '@dorajs/core';
import { ioReason, openRegularFile, openSafetensors } from '@dorajs/core/node';
import type { TokenIdsInput } from '@dorajs/models';
import { InputFileError } from './errors.js';
import { IdsJsonReader } from './ids-json.js';

export { IdsJsonReader, MAX_IDS, parseIdsJson } from './ids-json.js';

export async function readIdsFile(path: string): Promise<TokenIdsInput> {
  if (path.endsWith('.safetensors')) {
    const file = await openSafetensors(path);
    try {
      if (!file.has('ids')) {
        const keys = file.keys.slice(0, 10).join(', ');
        throw new InputFileError(`${path}: no tensor named 'ids' (found: ${keys || 'none'}${file.keys.length > 10 ? ', …' : ''})`);
      }
      const ids = await file.read('ids');
      return ids.shape.length === 1 ? ({ ...ids, shape: [1, ids.shape[0]!] } as HostTensor) : ids;
    } finally {
      await file.close().catch(() => {});
    }
  }
  const opened = await openRegularFile(path).catch((e: unknown) => {
    if (!(e instanceof FileError)) throw e;
    const code = (e.cause as { code?: unknown } | undefined)?.code;
    throw new InputFileError(`cannot read ids file ${path}: ${typeof code === 'string' ? code : e.reason}`);
  });
  // Streamed: memory follows the ids accepted so far, never the file's size.
  const reader = new IdsJsonReader(path);
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const { bytesRead } = await opened.handle.read(chunk, 0, chunk.length, null).catch((e: unknown) => {
        throw new InputFileError(`cannot read ids file ${path}: ${ioReason(e)}`);
      });
      if (bytesRead === 0) break;
      reader.push(chunk.subarray(0, bytesRead));
    }
  } finally {
    await opened.handle.close().catch(() => {});
  }
  return reader.end();
}
