/**
 * The packed weight formats, exactly bitsandbytes' (see docs/narrow-weights.md):
 *
 * - nf4 / fp4: the row-major weight flattened, cut into blocks of `blocksize` (64) elements, each element
 *   x stored as the 4-bit code nearest x/absmax(block); element 2i in the HIGH nibble of byte i, 2i+1 in
 *   the low nibble. `absmax` is float32 per block, or — double quantization — uint8 codes of the 8-bit
 *   dynamic map over (absmax − offset) in blocks of 256 with their own float32 absmax.
 * - int8: one int8 per element and one float32 scale per row (SCB = max|row|); W = q · SCB · (1/127).
 */
import { QuantizationError } from '../errors.js';

export type QuantFormat = 'nf4' | 'fp4' | 'int8';

/** bitsandbytes' 4-bit block sizes (quantize_4bit asserts one of these). */
export const SUPPORTED_BLOCKSIZES: readonly number[] = [64, 128, 256, 512, 1024, 2048, 4096];
/** Double quantization's block size for the absmax (quantize_blockwise(absmax, blocksize=256)). */
export const DOUBLE_QUANT_BLOCKSIZE = 256;

/** The second-level state of a double-quantized absmax (bitsandbytes' `state2` + `offset`). */
export interface NestedAbsmaxHost {
  /** float32 absmax of each block of 256 absmax codes. */
  readonly absmax: Float32Array;
  /** The 256-entry dynamic map the codes index (`nested_quant_map`). */
  readonly code: Float32Array;
  /** Mean absmax, subtracted before quantizing (`nested_offset`). */
  readonly offset: number;
  readonly blocksize: number;
}

export interface Quantized4bitHost {
  readonly format: 'nf4' | 'fp4';
  /** The logical weight [rows, cols] (PyTorch's [out, in]). */
  readonly shape: readonly [number, number];
  readonly blocksize: number;
  /** ceil(rows·cols / 2) bytes, two codes each (first element in the high nibble). */
  readonly data: Uint8Array;
  /** float32 per block, or uint8 codes when `nested`. */
  readonly absmax: Float32Array | Uint8Array;
  readonly nested: NestedAbsmaxHost | null;
}

export interface Int8Host {
  readonly format: 'int8';
  readonly shape: readonly [number, number];
  /** rows·cols int8 values (bitsandbytes' CB). */
  readonly data: Int8Array;
  /** float32 max|row| per row (SCB). */
  readonly scb: Float32Array;
}

export type QuantizedHost = Quantized4bitHost | Int8Host;

/** Bytes the packed form takes (data + scales + nested state). */
export function quantizedBytes(q: QuantizedHost): number {
  if (q.format === 'int8') return q.data.byteLength + q.scb.byteLength;
  const nested = q.nested ? q.nested.absmax.byteLength + q.nested.code.byteLength + 4 : 0;
  return q.data.byteLength + q.absmax.byteLength + nested;
}

/**
 * Checks that every part of a packed weight has the length its shape and block size imply (a truncated
 * or mismatched checkpoint), naming the tensor. Nothing is converted before this passes.
 */
export function validateQuantized(q: QuantizedHost, name: string): void {
  const fmt = (q as { format: string }).format;
  if (fmt !== 'nf4' && fmt !== 'fp4' && fmt !== 'int8') {
    throw new QuantizationError(`quant type '${fmt}' is not supported (nf4, fp4 or int8)`, name);
  }
  const [rows, cols] = q.shape;
  if (q.shape.length !== 2 || !(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0)) {
    throw new QuantizationError(`shape [${q.shape.join(', ')}] is not a 2-D weight`, name);
  }
  const n = rows * cols;
  const expect = (what: string, got: number, want: number) => {
    if (got !== want) throw new QuantizationError(`${what} has ${got} elements, expected ${want} for [${rows}, ${cols}]`, name);
  };
  if (q.format === 'int8') {
    if (!(q.data instanceof Int8Array)) throw new QuantizationError('int8 data must be an Int8Array', name);
    expect('int8 data', q.data.length, n);
    expect('SCB', q.scb.length, rows);
    return;
  }
  if (!SUPPORTED_BLOCKSIZES.includes(q.blocksize)) {
    throw new QuantizationError(`block size ${q.blocksize} is not supported (one of ${SUPPORTED_BLOCKSIZES.join(', ')})`, name);
  }
  if (!(q.data instanceof Uint8Array)) throw new QuantizationError('packed 4-bit data must be a Uint8Array', name);
  expect(`packed ${q.format} data`, q.data.length, Math.ceil(n / 2));
  const blocks = Math.ceil(n / q.blocksize);
  expect('absmax', q.absmax.length, blocks);
  if (q.nested) {
    if (!(q.absmax instanceof Uint8Array)) throw new QuantizationError('a double-quantized absmax must be uint8 codes', name);
    if (q.nested.blocksize !== DOUBLE_QUANT_BLOCKSIZE && !SUPPORTED_BLOCKSIZES.includes(q.nested.blocksize)) {
      throw new QuantizationError(`nested block size ${q.nested.blocksize} is not supported`, name);
    }
    expect('nested absmax', q.nested.absmax.length, Math.ceil(blocks / q.nested.blocksize));
    expect('nested quant map', q.nested.code.length, 256);
    if (!Number.isFinite(q.nested.offset)) throw new QuantizationError(`nested offset is ${q.nested.offset}`, name);
  } else if (!(q.absmax instanceof Float32Array)) {
    throw new QuantizationError('absmax must be float32 (or uint8 codes with a nested state)', name);
  }
}
