/**
 * safetensors in memory (browsers and Node): parse a whole file held in a byte array, or serialise one.
 * The Node-only file functions (lazy per-key reads, atomic saves) are in `safetensors-file.ts`.
 */
import type { HostTensor } from './host-tensor.js';
import { decodeTensor } from './safetensors-decode.js';
import { HEADER_LENGTH_BYTES, parseHeader, readHeaderLength, type SafetensorsHeader } from './safetensors-header.js';

export { MAX_HEADER_BYTES, type SafetensorsHeader, type TensorEntry } from './safetensors-header.js';
export { READABLE_DTYPES, type SafetensorsDType } from './safetensors-dtypes.js';
export { layoutSafetensors, serializeSafetensors, type SafetensorsLayout, type TensorsToWrite } from './safetensors-encode.js';

export interface SafetensorsContents {
  readonly metadata: Readonly<Record<string, string>>;
  /** Every tensor, in file order. */
  readonly tensors: ReadonlyMap<string, HostTensor>;
}

/** Validates the header of a complete file held in `bytes`; `file` names it in errors. */
export function parseSafetensorsHeader(bytes: Uint8Array, file = '<memory>'): SafetensorsHeader {
  const length = readHeaderLength(bytes, bytes.byteLength, file);
  return parseHeader(bytes.subarray(HEADER_LENGTH_BYTES, HEADER_LENGTH_BYTES + length), bytes.byteLength, file);
}

/**
 * Parses a complete file. Each tensor gets its own copy of its bytes (one copy of the file in total), so
 * the results are aligned, independent of `bytes`, and `bytes` can be dropped afterwards.
 */
export function parseSafetensors(bytes: Uint8Array, file = '<memory>'): SafetensorsContents {
  const header = parseSafetensorsHeader(bytes, file);
  const tensors = new Map<string, HostTensor>();
  for (const entry of header.entries) {
    const start = header.dataStart + entry.begin;
    tensors.set(entry.key, decodeTensor(entry, copyBytes(bytes, start, header.dataStart + entry.end), file));
  }
  return { metadata: header.metadata, tensors };
}

/** A real copy even for a Node Buffer, whose `slice` returns a view. */
function copyBytes(bytes: Uint8Array, begin: number, end: number): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, begin, end);
}
