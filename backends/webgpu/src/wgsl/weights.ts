/**
 * WGSL decoders of a weight matrix W [rows, cols] in any storage format (docs/narrow-weights.md): dense
 * float32, bfloat16 or float16, and bitsandbytes' packed nf4 / fp4 (a 4-bit code per element, high nibble
 * first, times a float32 absmax per block) and int8 (times SCB per row and 1/127). Kernels read W through
 * `w_at(e)` (element e = r·cols + c) or `w_at4(e)` (elements e..e+3, e % 4 == 0), so W is widened in
 * registers and never stored as float32. Each value is the product bitsandbytes rounds once to float32
 * (WGSL's f32 multiply is correctly rounded), so widening is exact.
 *
 * Packed formats are bound as u32 words (four bytes, little-endian, as uploaded). float16 is bound as
 * `array<f16>` (format 'f16', `enable f16;`) on a device with `shader-f16`, else as u32 words unpacked with
 * `unpack2x16float`; both read the same bytes and widen them exactly, so both give the same bits.
 */
import { code4bit, type DType, type QuantFormat } from '@dorajs/core';
import { bindInput, type BoundType } from './common.js';

/** How W is stored; 'f16' is float16 bound as `array<f16>` (see `BoundType`). */
export type WeightFormat = 'float32' | 'bfloat16' | 'float16' | 'f16' | QuantFormat;

/** How W is stored: its format and, for nf4/fp4, the elements per absmax block. */
export interface WeightCodec {
  readonly format: WeightFormat;
  /** nf4/fp4: elements per absmax block (a multiple of 64); 0 otherwise. */
  readonly blocksize: number;
}

export const DENSE = (dtype: BoundType): WeightCodec => ({ format: dtype as WeightFormat, blocksize: 0 });

/** The dense dtypes a weight may have (widened in registers by every program that reads W). */
export const DENSE_WEIGHT_DTYPES: ReadonlySet<DType> = new Set(['float32', 'bfloat16', 'float16']);

export function isQuantized(c: WeightCodec): boolean {
  return c.format === 'nf4' || c.format === 'fp4' || c.format === 'int8';
}

/** The part of a program key that names the codec. */
export function codecKey(c: WeightCodec): string {
  return c.blocksize ? `${c.format}/${c.blocksize}` : c.format;
}

/** The WGSL element type W is bound as: four elements per element when `vec`. */
function weightType(format: WeightFormat, vec: boolean): string {
  switch (format) {
    case 'float32':
      return vec ? 'vec4<f32>' : 'f32';
    case 'f16':
      return vec ? 'vec4<f16>' : 'f16';
    case 'bfloat16':
    case 'float16':
      return vec ? 'vec2<u32>' : 'u32';
    default:
      return 'u32';
  }
}

/**
 * Bindings `name` (and `${name}S`, the float32 scales, for packed formats) from `binding`; returns the
 * WGSL and the number of bindings.
 */
export function bindWeight(c: WeightCodec, binding: number, vec: boolean, name = 'W'): [string, number] {
  const lines = [bindInput(binding, name, weightType(c.format, vec))];
  if (isQuantized(c)) lines.push(bindInput(binding + 1, `${name}S`, 'f32'));
  return [lines.join('\n'), lines.length];
}

/**
 * `x`, kept as the rounded float32 product it is: int8 dequantization is (q·SCB)·(1/127) with both products
 * rounded, and a shader compiler allowed to reassociate (llvmpipe's LLVM is) would fold SCB·(1/127) first,
 * one ulp away. The bits pass through an integer XOR with a value the compiler cannot know is 0 (`e` never
 * reaches 2³²−1), which it cannot see through.
 */
const ROUNDED = `fn rounded(x: f32, e: u32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ u32(e == 0xffffffffu)); }
fn rounded4(x: vec4<f32>, e: u32) -> vec4<f32> { return bitcast<vec4<f32>>(bitcast<vec4<u32>>(x) ^ vec4<u32>(u32(e == 0xffffffffu))); }`;

/** 1/127 rounded to float32 (bitsandbytes' int8_vectorwise_dequant constant). */
const INV127 = Math.fround(1 / 127);

function codeTable(format: 'nf4' | 'fp4', name: string): string {
  // -0 (fp4's negative zero) keeps its sign: bitsandbytes dequantizes code 8 to -0.
  const values = Array.from(code4bit(format), (v) => (Object.is(v, -0) ? '-0.0' : Number.isInteger(v) ? v.toFixed(1) : String(v)));
  return `var<private> ${name}_CODE: array<f32, 16> = array<f32, 16>(${values.join(', ')});`;
}

/**
 * WGSL functions reading the weight bound as `name`: `${name}_at4(e)` when `vec` (bound by
 * `bindWeight(c, _, true, name)`), else `${name}_at(e)`. `cols` is a WGSL expression giving W's row length
 * (int8 scales are per row).
 */
export function weightDecoder(c: WeightCodec, vec: boolean, cols: string, name = 'W'): string {
  const f = c.format;
  const W = name;
  const WS = `${name}S`;
  if (vec) {
    switch (f) {
      case 'float32':
        return `fn ${W}_at4(e: u32) -> vec4<f32> { return ${W}[e >> 2u]; }`;
      case 'f16':
        return `fn ${W}_at4(e: u32) -> vec4<f32> { return vec4<f32>(${W}[e >> 2u]); }`;
      case 'bfloat16':
        return `fn ${W}_at4(e: u32) -> vec4<f32> {
  let w = ${W}[e >> 2u];
  return vec4<f32>(bitcast<f32>(w.x << 16u), bitcast<f32>(w.x & 0xffff0000u), bitcast<f32>(w.y << 16u), bitcast<f32>(w.y & 0xffff0000u));
}`;
      case 'float16':
        return `fn ${W}_at4(e: u32) -> vec4<f32> {
  let w = ${W}[e >> 2u];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}`;
      case 'int8':
        return `${ROUNDED}
fn ${W}_at4(e: u32) -> vec4<f32> {
  let q = bitcast<i32>(${W}[e >> 2u]);
  let v = vec4<f32>(f32(extractBits(q, 0u, 8u)), f32(extractBits(q, 8u, 8u)), f32(extractBits(q, 16u, 8u)), f32(extractBits(q, 24u, 8u)));
  return rounded4(v * ${WS}[e / ${cols}], e) * ${INV127};
}`;
      case 'nf4':
      case 'fp4':
        return `${codeTable(f, W)}
fn ${W}_at4(e: u32) -> vec4<f32> {
  let h = (${W}[e >> 3u] >> (((e >> 2u) & 1u) * 16u)) & 0xffffu;
  let codes = vec4<f32>(${W}_CODE[(h >> 4u) & 15u], ${W}_CODE[h & 15u], ${W}_CODE[h >> 12u], ${W}_CODE[(h >> 8u) & 15u]);
  return codes * ${WS}[e / ${c.blocksize}u];
}`;
    }
  }
  switch (f) {
    case 'float32':
      return `fn ${W}_at(e: u32) -> f32 { return ${W}[e]; }`;
    case 'f16':
      return `fn ${W}_at(e: u32) -> f32 { return f32(${W}[e]); }`;
    case 'bfloat16':
      return `fn ${W}_at(e: u32) -> f32 { return bitcast<f32>(((${W}[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu) << 16u); }`;
    case 'float16':
      return `fn ${W}_at(e: u32) -> f32 { return unpack2x16float(${W}[e >> 1u])[e & 1u]; }`;
    case 'int8':
      return `${ROUNDED}
fn ${W}_at(e: u32) -> f32 {
  return rounded(f32(extractBits(bitcast<i32>(${W}[e >> 2u]), (e & 3u) * 8u, 8u)) * ${WS}[e / ${cols}], e) * ${INV127};
}`;
    case 'nf4':
    case 'fp4':
      return `${codeTable(f, W)}
fn ${W}_at(e: u32) -> f32 {
  let byte = (${W}[e >> 3u] >> (((e >> 1u) & 3u) * 8u)) & 0xffu;
  return ${W}_CODE[select(byte & 15u, byte >> 4u, (e & 1u) == 0u)] * ${WS}[e / ${c.blocksize}u];
}`;
  }
}
