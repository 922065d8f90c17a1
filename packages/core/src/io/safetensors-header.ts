/**
 * The safetensors header: an 8-byte little-endian length, then that many bytes of UTF-8 JSON mapping each
 * key to `{ dtype, shape, data_offsets }` (plus an optional `__metadata__` string map), then the data
 * section. Validation follows the Rust reference: tensors must tile the data section exactly (no gaps, no
 * overlaps, no trailing bytes), each byte range must match dtype × shape, and the header is bounded. The
 * JSON grammar is the reference's too (integers only, well-formed strings, bounded depth): see
 * `safetensors-json.ts`.
 * Pure byte code: runs in browsers as well as Node.
 */
import { SafetensorsError } from '../errors.js';
import { preview } from '../preview.js';
import { dtypeBits, isKnownDType } from './safetensors-dtypes.js';
import { HeaderJsonError, parseHeaderJson } from './safetensors-json.js';

/** The Rust reference refuses larger headers; so do we, before allocating anything. */
export const MAX_HEADER_BYTES = 100_000_000;
export const HEADER_LENGTH_BYTES = 8;
export const METADATA_KEY = '__metadata__';

export interface TensorEntry {
  readonly key: string;
  /** A known safetensors dtype name; it may still be one dorajs cannot decode (checked on read). */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte range relative to the start of the data section. */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  readonly metadata: Readonly<Record<string, string>>;
  /** In file order (ascending offsets). */
  readonly entries: readonly TensorEntry[];
  /** Absolute file offset of the data section (8 + header length). */
  readonly dataStart: number;
}

/** Reads and bounds-checks the header length from the first 8 bytes of a file of `fileSize` bytes. */
export function readHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < HEADER_LENGTH_BYTES || prefix.byteLength < HEADER_LENGTH_BYTES) {
    throw new SafetensorsError(`file is ${fileSize} bytes, too short for the 8-byte header length`, file);
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, HEADER_LENGTH_BYTES).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`, file);
  }
  if (length > BigInt(fileSize - HEADER_LENGTH_BYTES)) {
    throw new SafetensorsError(`header length ${length} exceeds the ${fileSize - HEADER_LENGTH_BYTES} bytes that follow it`, file);
  }
  return Number(length);
}

/** Parses and validates the JSON header against a file of `fileSize` bytes. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const dataStart = HEADER_LENGTH_BYTES + headerBytes.byteLength;
  const json = parseJsonObject(decodeUtf8(headerBytes, file), file);
  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [key, value] of Object.entries(json)) {
    if (key === METADATA_KEY) metadata = parseMetadata(value, file);
    else entries.push(parseEntry(key, value, file));
  }
  checkTiling(entries, fileSize - dataStart, file);
  return { metadata, entries, dataStart };
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new SafetensorsError('header is not valid UTF-8', file);
  }
}

function parseJsonObject(text: string, file: string): Record<string, unknown> {
  // The reference rejects anything before the opening brace (a BOM, whitespace) rather than skipping it.
  if (!text.startsWith('{')) throw new SafetensorsError('header is not a JSON object (it must start with "{")', file);
  let value: unknown;
  try {
    value = parseHeaderJson(text);
  } catch (error) {
    if (error instanceof HeaderJsonError) throw new SafetensorsError(error.message, file, error.key);
    throw error;
  }
  if (!isPlainObject(value)) throw new SafetensorsError('header is not a JSON object', file);
  return value;
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (!isPlainObject(value)) {
    throw new SafetensorsError(`must be an object mapping strings to strings, got ${describe(value)}`, file, METADATA_KEY);
  }
  const metadata: Record<string, string> = {};
  for (const [name, text] of Object.entries(value)) {
    if (typeof text !== 'string') {
      throw new SafetensorsError(`value of ${preview(name)} must be a string, got ${describe(text)}`, file, METADATA_KEY);
    }
    metadata[name] = text;
  }
  return metadata;
}

// Unknown fields inside an entry are ignored, as the Rust reference (serde without deny_unknown_fields) does.
function parseEntry(key: string, value: unknown, file: string): TensorEntry {
  if (!isPlainObject(value)) throw new SafetensorsError(`entry must be an object, got ${describe(value)}`, file, key);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string') throw new SafetensorsError(`dtype must be a string, got ${describe(dtype)}`, file, key);
  if (!isKnownDType(dtype)) throw new SafetensorsError(`unknown dtype ${preview(dtype)}`, file, key);
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new SafetensorsError(`shape must be an array of non-negative integers, got ${preview(shape)}`, file, key);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw new SafetensorsError(`data_offsets must be two non-negative integers [begin, end], got ${preview(offsets)}`, file, key);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new SafetensorsError(`data_offsets [${begin}, ${end}] are reversed`, file, key);
  const bits = elementCount(shape as number[], file, key) * dtypeBits(dtype);
  if (!Number.isSafeInteger(bits) || bits % 8 !== 0) {
    throw new SafetensorsError(`shape ${preview(shape)} of ${dtype} is not a whole number of bytes`, file, key);
  }
  if (bits / 8 !== end - begin) {
    throw new SafetensorsError(
      `shape ${preview(shape)} of ${dtype} needs ${bits / 8} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      file,
      key,
    );
  }
  return { key, dtype, shape: shape as number[], begin, end };
}

function elementCount(shape: readonly number[], file: string, key: string): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) throw new SafetensorsError(`shape ${preview(shape)} is too large`, file, key);
  }
  return n;
}

/** Sorts `entries` in place by offset and checks they cover [0, dataSize) exactly once. */
function checkTiling(entries: TensorEntry[], dataSize: number, file: string): void {
  for (const e of entries) {
    if (e.end > dataSize) {
      throw new SafetensorsError(`data_offsets [${e.begin}, ${e.end}] run past the ${dataSize}-byte data section`, file, e.key);
    }
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorEntry | undefined;
  for (const e of entries) {
    if (e.begin < covered) {
      throw new SafetensorsError(
        `data_offsets [${e.begin}, ${e.end}] overlap '${previous!.key}' [${previous!.begin}, ${previous!.end}]`,
        file,
        e.key,
      );
    }
    if (e.begin > covered) {
      throw new SafetensorsError(
        `gap of ${e.begin - covered} bytes before data_offsets [${e.begin}, ${e.end}] (previous tensor ends at ${covered})`,
        file,
        e.key,
      );
    }
    covered = e.end;
    previous = e;
  }
  if (covered !== dataSize) {
    throw new SafetensorsError(
      `${dataSize - covered} trailing bytes after the last tensor (data section is ${dataSize} bytes, tensors cover ${covered})`,
      file,
      previous?.key,
    );
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${preview(value)}`;
}
