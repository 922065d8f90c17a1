/**
 * Lays out a safetensors file exactly as the Rust/Python writer does: tensors ordered by descending
 * alignment then key (so each stays aligned to its item size), a compact JSON header with `__metadata__`
 * first, padded with spaces to a multiple of 8 bytes. Pure byte code; the Node writer streams the parts.
 */
import { SafetensorsError } from '../errors.js';
import { numelOf, type HostTensor } from './host-tensor.js';
import { HOST_IS_LITTLE_ENDIAN, swapBytes } from './safetensors-decode.js';
import { bytesPerElement, isReadableDType, writeRank } from './safetensors-dtypes.js';
import { HEADER_LENGTH_BYTES, METADATA_KEY } from './safetensors-header.js';

export type TensorsToWrite = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

export interface SafetensorsLayout {
  /** The 8-byte length followed by the padded JSON header. */
  readonly header: Uint8Array;
  /** Each tensor's little-endian bytes, in file order. */
  readonly chunks: readonly Uint8Array[];
  readonly byteLength: number;
}

const ARRAY_FOR_DTYPE = {
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I8: Int8Array,
  U8: Uint8Array,
} as const;

/** Validates `tensors` and `metadata`; `file` only names the destination in errors. */
export function layoutSafetensors(
  tensors: TensorsToWrite,
  metadata: Readonly<Record<string, string>> | undefined,
  file: string,
): SafetensorsLayout {
  const items = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))] as [string, HostTensor][];
  for (const [key, tensor] of items) checkTensor(key, tensor, file);
  items.sort(([ka, a], [kb, b]) => writeRank(b.dtype) - writeRank(a.dtype) || compareCodePoints(ka, kb));

  // Built as text, not via an object: JS objects put integer-like keys ("0", "12") first, which would
  // break the offset order of the header, and a key named "__proto__" would be swallowed.
  const fields: string[] = [];
  if (metadata !== undefined) fields.push(`${JSON.stringify(METADATA_KEY)}:${metadataJson(metadata, file)}`);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [key, tensor] of items) {
    const bytes = littleEndianBytes(tensor);
    const info = { dtype: tensor.dtype, shape: [...tensor.shape], data_offsets: [offset, offset + bytes.byteLength] };
    fields.push(`${JSON.stringify(key)}:${JSON.stringify(info)}`);
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  const text = new TextEncoder().encode(`{${fields.join(',')}}`);
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(HEADER_LENGTH_BYTES + padded).fill(0x20, HEADER_LENGTH_BYTES + text.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, HEADER_LENGTH_BYTES);
  return { header, chunks, byteLength: header.byteLength + offset };
}

/** The whole file in one buffer (for browsers and small files; the Node writer streams instead). */
export function serializeSafetensors(tensors: TensorsToWrite, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const { header, chunks, byteLength } = layoutSafetensors(tensors, metadata, '<memory>');
  const out = new Uint8Array(byteLength);
  out.set(header, 0);
  let at = header.byteLength;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function checkTensor(key: string, tensor: HostTensor, file: string): void {
  if (key === METADATA_KEY) throw new SafetensorsError(`'${METADATA_KEY}' is reserved and cannot name a tensor`, file, key);
  if (typeof tensor !== 'object' || tensor === null) {
    throw new SafetensorsError(`expected a { dtype, shape, data } tensor, got ${tensor === null ? 'null' : typeof tensor}`, file, key);
  }
  if (!isReadableDType(tensor.dtype)) {
    throw new SafetensorsError(`cannot write dtype ${String(tensor.dtype)} (writable: F32, F16, BF16, I64, I32, I8, U8)`, file, key);
  }
  if (!Array.isArray(tensor.shape) || !tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`shape must be non-negative integers, got ${JSON.stringify(tensor.shape)}`, file, key);
  }
  const expected = ARRAY_FOR_DTYPE[tensor.dtype];
  if (!(tensor.data instanceof expected)) {
    throw new SafetensorsError(`${tensor.dtype} data must be a ${expected.name}, got ${describeArray(tensor.data)}`, file, key);
  }
  const numel = numelOf(tensor.shape);
  if (tensor.data.length !== numel) {
    throw new SafetensorsError(`shape ${JSON.stringify(tensor.shape)} has ${numel} elements but data has ${tensor.data.length}`, file, key);
  }
}

function metadataJson(metadata: Readonly<Record<string, string>>, file: string): string {
  const fields: string[] = [];
  for (const name of Object.keys(metadata).sort(compareCodePoints)) {
    const value: unknown = metadata[name];
    if (typeof value !== 'string') {
      throw new SafetensorsError(`metadata value of '${name}' must be a string, got ${typeof value}`, file, METADATA_KEY);
    }
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(value)}`);
  }
  return `{${fields.join(',')}}`;
}

function littleEndianBytes(tensor: HostTensor): Uint8Array {
  const { buffer, byteOffset, byteLength } = tensor.data;
  const bytes = new Uint8Array(buffer, byteOffset, byteLength);
  if (HOST_IS_LITTLE_ENDIAN) return bytes;
  const swapped = bytes.slice();
  swapBytes(swapped, bytesPerElement(tensor.dtype));
  return swapped;
}

/** Code-point order equals UTF-8 byte order, which is how the reference writer sorts keys. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return (x.done ? 0 : 1) - (y.done ? 0 : 1);
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

function describeArray(data: unknown): string {
  return typeof data === 'object' && data !== null ? data.constructor.name : typeof data;
}
