/**
 * Token ids for `dora run`: a JSON rectangular integer array [[…], …] or a safetensors file with key `ids`.
 * This reads the file; @dorajs/models' `tokenIds` validates (rectangular, integers, inside the vocabulary).
 */
import { readFile } from 'node:fs/promises';
import { type HostTensor, parseSafetensors } from '@dorajs/core';
import type { TokenIdsInput } from '@dorajs/models';
import { InputFileError } from './errors.js';

export async function readIdsFile(path: string): Promise<TokenIdsInput> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new InputFileError(`cannot read ids file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (path.endsWith('.safetensors')) {
    const { tensors } = parseSafetensors(bytes, path);
    const ids = tensors.get('ids');
    if (!ids) throw new InputFileError(`${path}: no tensor named 'ids' (found: ${[...tensors.keys()].join(', ') || 'none'})`);
    return ids.shape.length === 1 ? ({ ...ids, shape: [1, ids.shape[0]!] } as HostTensor) : ids;
  }
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new InputFileError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new InputFileError(`${path}: expected an array of rows [[…], …]`);
  // A flat list is one sequence.
  return (data.length > 0 && !Array.isArray(data[0]) ? [data] : data) as TokenIdsInput;
}
