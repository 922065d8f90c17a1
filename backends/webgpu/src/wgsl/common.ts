/**
 * WGSL snippets shared by the kernels: typed buffer declarations with element loaders that widen every
 * storage dtype to f32 (or i32), and the linear-invocation prologue used by one-thread-per-element kernels.
 */
import type { DType } from '@dorajs/core';
import { MAX_RANK } from '../shapes.js';

/** Threads per workgroup for one-thread-per-element kernels: 128 fits even compatibility-mode default limits. */
export const ELEMENTWISE_WORKGROUP = 128;

/**
 * How a program binds a tensor: its dtype, or 'f16' for float16 bound as `array<f16>` (`enable f16;`) on a
 * device with `shader-f16` (see `KernelContext.bound`). Without it float16 is bound as packed u32 words and
 * widened with `unpack2x16float`; both widen exactly, so both give the same bits.
 */
export type BoundType = DType | 'f16';

/** WGSL array element type a dtype is bound as. */
export function storageType(dtype: BoundType): 'f32' | 'i32' | 'u32' | 'f16' {
  if (dtype === 'float32') return 'f32';
  if (dtype === 'int32') return 'i32';
  if (dtype === 'f16') return 'f16';
  return 'u32';
}

/** Expression reading element `idx` (a u32 expression) of buffer `v` as f32. */
export function loadF32(v: string, dtype: BoundType, idx: string): string {
  switch (dtype) {
    case 'float32':
      return `${v}[${idx}]`;
    case 'f16':
      return `f32(${v}[${idx}])`;
    case 'int32':
      return `f32(${v}[${idx}])`;
    case 'bfloat16':
      return `bitcast<f32>(((${v}[(${idx}) >> 1u] >> (((${idx}) & 1u) * 16u)) & 0xffffu) << 16u)`;
    case 'float16':
      return `unpack2x16float(${v}[(${idx}) >> 1u])[(${idx}) & 1u]`;
    case 'int8':
      return `f32(extractBits(bitcast<i32>(${v}[(${idx}) >> 2u]), ((${idx}) & 3u) * 8u, 8u))`;
    case 'uint8':
      return `f32(extractBits(${v}[(${idx}) >> 2u], ((${idx}) & 3u) * 8u, 8u))`;
  }
}

/** Expression reading element `idx` of buffer `v` as i32 (exact for int32, truncating for floats). */
export function loadI32(v: string, dtype: BoundType, idx: string): string {
  switch (dtype) {
    case 'int32':
      return `${v}[${idx}]`;
    case 'int8':
      return `extractBits(bitcast<i32>(${v}[(${idx}) >> 2u]), ((${idx}) & 3u) * 8u, 8u)`;
    case 'uint8':
      return `i32(extractBits(${v}[(${idx}) >> 2u], ((${idx}) & 3u) * 8u, 8u))`;
    default:
      return `i32(${loadF32(v, dtype, idx)})`;
  }
}

/** Expression giving the raw bits (zero-extended) of element `idx` of buffer `v` bound as array<u32>. */
export function loadBits(v: string, dtype: DType, idx: string): string {
  switch (dtype) {
    case 'float32':
    case 'int32':
      return `${v}[${idx}]`;
    case 'bfloat16':
    case 'float16':
      return `extractBits(${v}[(${idx}) >> 1u], ((${idx}) & 1u) * 16u, 16u)`;
    case 'int8':
    case 'uint8':
      return `extractBits(${v}[(${idx}) >> 2u], ((${idx}) & 3u) * 8u, 8u)`;
  }
}

/** `enable f16;` for a binding of f16 values (hoisted above every declaration by `runtime/pipelines.ts`). */
function enables(type: string): string {
  return /\bf16\b/.test(type) ? 'enable f16;\n' : '';
}

export function bindInput(binding: number, name: string, type: string): string {
  return `${enables(type)}@group(0) @binding(${binding}) var<storage, read> ${name}: array<${type}>;`;
}

export function bindOutput(binding: number, name: string, type: string): string {
  return `${enables(type)}@group(0) @binding(${binding}) var<storage, read_write> ${name}: array<${type}>;`;
}

/**
 * Entry point for kernels with one invocation per item: the grid may be 2-D when there are more than
 * 65535 workgroups, so the linear index folds y into x.
 */
export function linearMain(workgroup: number, body: string): string {
  return `@compute @workgroup_size(${workgroup})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let index = gid.x + gid.y * nwg.x * ${workgroup}u;
${body}
}`;
}

/** WGSL helpers to read a u32 out of the `dims` vec4 array of the uniform struct. */
export const DIMS_ACCESSOR = `fn dim(i: u32) -> u32 { return P.dims[i >> 2u][i & 3u]; }`;

/**
 * WGSL giving the element offsets of batch `bz`'s two operands (x: A, y: B), for programs whose uniforms
 * hold `batchRank` and dims [batch shape, A's batch strides, B's batch strides] (each MAX_RANK long).
 */
export const BATCH_OFFSETS = `
fn batch_offsets(bz: u32) -> vec2<u32> {
  var rem = bz;
  var off = vec2<u32>(0u, 0u);
  for (var dd = i32(P.batchRank) - 1; dd >= 0; dd--) {
    let d = u32(dd);
    let c = rem % dim(d);
    rem = rem / dim(d);
    off += c * vec2<u32>(dim(${MAX_RANK}u + d), dim(${2 * MAX_RANK}u + d));
  }
  return off;
}`;

/**
 * ±infinity and NaN. WGSL rejects them as constant expressions, so they come from a runtime `var`.
 */
export const SPECIAL_FLOATS = `fn f32_pos_inf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
fn f32_neg_inf() -> f32 { var b = 0xff800000u; return bitcast<f32>(b); }
fn f32_nan() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }`;
