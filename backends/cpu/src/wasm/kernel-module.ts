/**
 * The kernel module emitter: the task list and the bytes of the one wasm module every kernel lives in, written
 * by the emitters (gemm, weight norm, narrow, im2col, elementwise). The largest part of the backend's code:
 * `loadCpuBackend` loads it (with the host-side kernels, engine.ts) as a lazy chunk; only `createCpuBackend`
 * imports it statically.
 */
import { ModuleBuilder } from './encoder.js';
import { elementwiseTaskNames, emitElementwise } from './elementwise-wasm.js';
import { emitGemm } from './gemm-wasm.js';
import { emitIm2col } from './im2col-wasm.js';
import { emitNarrow } from './narrow-wasm.js';
import { type KernelModuleSource, MAX_PAGES } from './runtime.js';
import { emitWeightNorm } from './weight-norm-wasm.js';

/** Exports of the kernel module that the host calls (or hands to worker threads by name). */
export const TASK_EXPORTS: readonly string[] = [
  'gemm_task',
  'gemm_pack_task',
  'gemm_block_task',
  'gemv_task',
  'im2col_task',
  'col2im_task',
  'wn_rows_task',
  'wn_cols_task',
  'nw_decode_task',
  'nw_gemv_task',
  'nw_xsplit_task',
  ...elementwiseTaskNames(),
];
/** The kernel module's bytes (exported for tests that validate every variant). */
export function kernelModuleBytes(fma: boolean, shared: boolean): Uint8Array {
  const mb = new ModuleBuilder({ initialPages: 1, maximumPages: MAX_PAGES, shared });
  emitGemm(mb, fma);
  emitWeightNorm(mb, fma);
  emitNarrow(mb, fma);
  emitIm2col(mb);
  emitElementwise(mb);
  return mb.bytes();
}

/** The source a runtime compiles its kernel variants from. */
export const KERNEL_MODULE: KernelModuleSource = { bytes: kernelModuleBytes, tasks: TASK_EXPORTS };
