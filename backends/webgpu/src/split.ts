/**
 * Tensors larger than one buffer. A device caps each buffer (`maxBufferSize`) and each binding
 * (`maxStorageBufferBindingSize`, 128 MiB by default and on llvmpipe), while Llama-3.2-1B's bf16 embedding
 * alone is 525 MB. Such a tensor is stored as consecutive parts, each a plain tensor of whole rows along
 * axis 0; kernels that touch weights run once per part (`kernels/split.ts`), every other kernel refuses a
 * split tensor with a typed error instead of binding a wrong buffer.
 *
 * Parts are planned at 4 bytes per element whatever the dtype, so every tensor of one shape splits at the
 * same rows (a bf16 W and its float32 delta pair up part by part), and hold a multiple of 256 elements, so
 * packed words and quantization blocks never straddle two buffers.
 */
import type { DType } from '@dorajs/core';
import { sizeClass, type GpuBuffer } from './buffer-pool.js';
import type { GpuTensor } from './context.js';
import { GpuOutOfMemoryError, SplitTensorError } from './errors.js';
import { sizeOf } from './shapes.js';
import { storageBytes } from './storage.js';

/** Elements every part boundary is a multiple of. */
const PART_ALIGN = 256;

/** A tensor stored over several buffers: `parts` hold consecutive element ranges (whole rows). */
export class SplitTensor implements GpuTensor {
  released?: boolean;

  constructor(
    readonly dtype: DType,
    readonly size: number,
    readonly parts: readonly GpuTensor[],
  ) {}

  /** A split tensor has no single buffer: a kernel that binds it directly is a bug, reported as such. */
  get buf(): GpuBuffer {
    throw new SplitTensorError(`a tensor of ${this.size} ${this.dtype} split over ${this.parts.length} buffers was bound as one buffer`);
  }
}

export function isSplit(t: GpuTensor): t is SplitTensor {
  return t instanceof SplitTensor;
}

/**
 * The largest buffer-pool size class not above `maxBytes`: a part is allocated at its size class (up to
 * 25% above what it asks for), which must still be within the device's limits.
 */
export function partCapacity(maxBytes: number): number {
  if (maxBytes < 256) throw new GpuOutOfMemoryError(`a buffer limit of ${maxBytes} bytes is below the 256-byte minimum`, maxBytes);
  let cap = Math.floor(maxBytes / 256) * 256;
  while (sizeClass(cap) > maxBytes) {
    const pow = 2 ** Math.floor(Math.log2(cap - 1));
    cap = Math.floor((cap - 1) / Math.max(256, pow / 4)) * Math.max(256, pow / 4);
  }
  return cap;
}

/** Whether a tensor of `size` elements of `dtype` needs more than one buffer of `capacity` bytes. */
export function needsSplit(dtype: DType, size: number, capacity: number): boolean {
  return storageBytes(dtype, size) > capacity;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Elements of one row along axis 0 (a 0-/1-D tensor has rows of one element). */
export function rowElements(shape: readonly number[]): number {
  return shape.length <= 1 ? 1 : sizeOf(shape.slice(1));
}

/** Rows of `shape` per part: whole rows, at most `capacity` bytes at 4 bytes per element, PART_ALIGN-aligned. */
export function rowsPerPart(shape: readonly number[], capacity: number, what: string): number {
  const row = rowElements(shape);
  const step = PART_ALIGN / gcd(row, PART_ALIGN);
  const rows = Math.floor(capacity / (4 * row * step)) * step;
  if (rows < 1) {
    throw new GpuOutOfMemoryError(
      `${what}: one row of [${shape.join(', ')}] (${step} rows: ${4 * row * step} bytes at 4 per element) does not fit a buffer of ${capacity} bytes`,
      4 * row * step,
    );
  }
  return rows;
}

/** Element counts of the parts of a tensor of `shape` (the last part takes the remainder). */
export function planParts(shape: readonly number[], capacity: number, what: string): number[] {
  const row = rowElements(shape);
  const rows = shape.length === 0 ? 1 : shape[0]!;
  const per = rowsPerPart(shape, capacity, what);
  const sizes: number[] = [];
  for (let r = 0; r < rows; r += per) sizes.push(Math.min(per, rows - r) * row);
  return sizes;
}

/** A part seen as rows [start, start + rows) of a tensor of the given shape. */
export interface RowPart {
  readonly t: GpuTensor;
  readonly start: number;
  readonly rows: number;
}

/** The parts of `t` as row ranges of `shape`; a part that does not hold whole rows of `shape` is refused. */
export function rowParts(t: SplitTensor, shape: readonly number[], op: string): RowPart[] {
  const row = rowElements(shape);
  const out: RowPart[] = [];
  let start = 0;
  for (const p of t.parts) {
    if (p.size % row !== 0) {
      throw new SplitTensorError(
        `webgpu ${op}: tensor [${shape.join(', ')}] ${t.dtype} is split over ${t.parts.length} buffers at element ${start * row}, inside a row`,
      );
    }
    out.push({ t: p, start, rows: p.size / row });
    start += p.size / row;
  }
  return out;
}

/** Describes a split tensor for error messages. */
export function describeSplit(t: SplitTensor, shape: readonly number[]): string {
  return `tensor [${shape.join(', ')}] ${t.dtype} (${storageBytes(t.dtype, t.size)} bytes over ${t.parts.length} buffers)`;
}
