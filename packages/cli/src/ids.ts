/**
 * Token ids for `dora run`: a JSON rectangular integer array [[…], …] or a safetensors file with key `ids`.
 * This reads the file; @dorajs/models' `tokenIds` validates (rectangular, integers, inside the vocabulary).
 * Only regular files are read (a named pipe is refused, never waited on). A safetensors file is opened
 * header first and only its `ids` tensor is read; a JSON file is bounded in size and nesting before parsing.
 */
import { FileError, type HostTensor, parseJsonBounded } from '@dorajs/core';
import { openSafetensors, readRegularText } from '@dorajs/core/node';
import type { TokenIdsInput } from '@dorajs/models';
import { InputFileError } from './errors.js';

/** 64M ids as JSON text; larger inputs go in a safetensors file (read without parsing text). */
export const MAX_IDS_JSON_BYTES = 256 * 2 ** 20;

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
  const text = await readRegularText(path, MAX_IDS_JSON_BYTES).catch((e: unknown) => {
    if (!(e instanceof FileError)) throw e;
    const code = (e.cause as { code?: unknown } | undefined)?.code;
    throw new InputFileError(`cannot read ids file ${path}: ${typeof code === 'string' ? code : e.reason}`);
  });
  // [[…], …] nests two deep: anything deeper is refused before parsing.
  const data = parseJsonBounded(text, (reason) => new InputFileError(`${path}: ${reason}`), 2);
  if (!Array.isArray(data)) throw new InputFileError(`${path}: expected an array of rows [[…], …]`);
  // A flat list is one sequence.
  return (data.length > 0 && !Array.isArray(data[0]) ? [data] : data) as TokenIdsInput;
}
