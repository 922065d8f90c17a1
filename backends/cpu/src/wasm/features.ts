/**
 * What this JavaScript engine offers the wasm kernels, detected once by validating tiny modules (the only
 * reliable test: a flag or a version number says nothing about the embedder's settings).
 */
import { wasmApi } from './wasm-api.js';

export interface WasmFeatures {
  /** WebAssembly with SIMD128: needed for the wasm kernels at all. */
  readonly simd: boolean;
  /**
   * Relaxed SIMD (f32x4.relaxed_madd → one FMA instruction): Node ≥ 22 and current browsers; Node 20 only
   * with `--experimental-wasm-relaxed-simd`.
   */
  readonly relaxedSimd: boolean;
  /** A shared WebAssembly.Memory can be created (Node; browsers only when cross-origin isolated). */
  readonly sharedMemory: boolean;
  /**
   * A non-shared WebAssembly.Memory can hand out a resizable buffer that growing never detaches
   * (`toResizableBuffer`: current Chromium, also on pages that are not cross-origin isolated). The kernels
   * then run on it single-threaded.
   */
  readonly resizableMemory: boolean;
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
/** Type section: one function type (v128, v128, v128) → v128. */
const V128_TYPE = [0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b];
const ONE_FUNCTION = [0x03, 0x02, 0x01, 0x00];

/** A module with one function of type (v128 ×3) → v128 whose body is `body` (the `end` is added). */
function probe(body: readonly number[]): Uint8Array {
  const fn = [0x00, ...body, 0x0b];
  const code = [0x01, fn.length, ...fn];
  return Uint8Array.from([...HEADER, ...V128_TYPE, ...ONE_FUNCTION, 0x0a, code.length, ...code]);
}

function validates(bytes: Uint8Array): boolean {
  try {
    return wasmApi?.validate(bytes) ?? false;
  } catch {
    return false;
  }
}

let detected: WasmFeatures | null = null;

export function wasmFeatures(): WasmFeatures {
  if (detected) return detected;
  // local.get 0; local.get 1; f32x4.add
  const simd = validates(probe([0x20, 0x00, 0x20, 0x01, 0xfd, 0xe4, 0x01]));
  // local.get 0; local.get 1; local.get 2; f32x4.relaxed_madd (0xfd 0x105)
  const relaxedSimd = simd && validates(probe([0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02]));
  let sharedMemory = false;
  try {
    sharedMemory =
      typeof SharedArrayBuffer === 'function' &&
      wasmApi !== undefined &&
      new wasmApi.Memory({ initial: 0, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    sharedMemory = false;
  }
  let resizableMemory = false;
  try {
    const memory = wasmApi ? new wasmApi.Memory({ initial: 0, maximum: 1 }) : undefined;
    resizableMemory = (memory?.toResizableBuffer?.() as { resizable?: boolean } | undefined)?.resizable === true;
  } catch {
    resizableMemory = false;
  }
  detected = { simd, relaxedSimd, sharedMemory, resizableMemory };
  return detected;
}
