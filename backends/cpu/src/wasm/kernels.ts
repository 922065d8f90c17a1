/**
 * The host side of the wasm kernels for one backend: writes argument blocks into the heap, splits work into
 * tasks and runs them — on the calling thread, or across the worker pool when one is running and the work is
 * large enough to pay for waking it.
 */
import { BackendError, sizeOf } from '@dorajs/core';
import { batchOffsets, type MatmulShapes } from '../kernels/matmul.js';
import { GEMM_SCRATCH_BYTES, GemmArg, GemvArg } from './gemm-wasm.js';
import { WN_ROWS, WN_THREAD_SCRATCH, WnArg } from './weight-norm-wasm.js';
import type { KernelVariant, TaskName, WasmRuntime } from './runtime.js';

/** The per-backend argument area: one 128-byte slot per kernel family, and a one-matrix batch table. */
const GEMM_ARGS = 0;
const GEMV_ARGS = 128;
const WN_ARGS = 256;
const UNIT_TABLE = 384;
const ARGS_BYTES = 512;
/** Norms below this (or not finite) may have lost float32 squares to underflow or overflow: redone in float64. */
const SUSPECT_NORM = 2 ** -40;

/** Splits work across threads; implemented by the worker pool. */
export interface TaskRunner {
  /** Threads that may take tasks, the calling thread included. */
  readonly threads: number;
  run(name: TaskName, tasks: number, args: number): void;
}

export class WasmKernels {
  private readonly args: number;
  private i32: Int32Array;
  private scratch = 0;
  private scratchThreads = 0;
  runner: TaskRunner | null = null;

  constructor(
    readonly runtime: WasmRuntime,
    readonly variant: KernelVariant,
    /** Multiply-adds below which a product is not split across threads (waking a worker costs ~10–50 µs). */
    readonly splitThreshold: number,
  ) {
    const args = runtime.heap.alloc(ARGS_BYTES);
    if (args === null) throw heapFull('backend', ARGS_BYTES);
    this.args = args;
    this.i32 = new Int32Array(runtime.buffer);
    this.words().fill(0, args >> 2, (args + ARGS_BYTES) >> 2);
  }

  /** Int32 view of the whole heap (re-made when the memory has grown). */
  private words(): Int32Array {
    const buffer = this.runtime.buffer;
    if (this.i32.buffer !== buffer) this.i32 = new Int32Array(buffer);
    return this.i32;
  }

  private get threads(): number {
    return this.runner?.threads ?? 1;
  }

  /** Per-thread GEMM scratch for the current thread count, allocated once (and grown with the pool). */
  private gemmScratch(): number {
    const threads = this.threads;
    if (this.scratchThreads < threads) {
      if (this.scratch) this.runtime.heap.free(this.scratch, this.scratchThreads * GEMM_SCRATCH_BYTES);
      const ptr = this.runtime.heap.alloc(threads * GEMM_SCRATCH_BYTES);
      if (ptr === null) throw heapFull('matmul', threads * GEMM_SCRATCH_BYTES);
      this.scratch = ptr;
      this.scratchThreads = threads;
    }
    return this.scratch;
  }

  /**
   * How many tasks to cut `work` (multiply-adds) into: 1 on one thread or below the split threshold,
   * otherwise four per thread (so a thread slowed by other load on the machine delays little), but none
   * smaller than a quarter of the threshold.
   */
  private tasksFor(work: number): number {
    const threads = this.threads;
    if (threads === 1 || work < this.splitThreshold) return 1;
    const byWork = this.splitThreshold > 0 ? Math.floor(work / (this.splitThreshold / 4)) : Infinity;
    return Math.max(1, Math.min(4 * threads, byWork));
  }

  private run(name: TaskName, tasks: number, args: number, work: number): void {
    if (this.runner && tasks > 1 && work >= this.splitThreshold) {
      this.runner.run(name, tasks, args);
      return;
    }
    const fn = this.variant.tasks[name];
    for (let t = 0; t < tasks; t++) fn(t, args, 0);
  }

  /**
   * out = a·b (each optionally transposed) over the last two axes, leading axes broadcast. All three are byte
   * addresses of dense row-major float32 tensors in the heap; `out` is fully written.
   */
  matmul(a: number, aShape: readonly number[], b: number, bShape: readonly number[], ta: boolean, tb: boolean, s: MatmulShapes, out: number): void {
    const { m, k, n, batch } = s;
    const count = sizeOf(batch);
    if (count === 0 || m === 0 || n === 0) return;
    if (k === 0) {
      new Float32Array(this.runtime.buffer, out, count * m * n).fill(0);
      return;
    }
    const aBatch = aShape.slice(0, -2);
    const bBatch = bShape.slice(0, -2);
    // One B for every batch (a Linear weight): the batch rows of A are one tall matrix.
    const tall = sizeOf(bBatch) === 1 && !ta;
    const mats = tall ? 1 : count;
    const rows = tall ? count * m : m;
    let table = this.args + UNIT_TABLE;
    if (mats > 1) {
      const t = this.runtime.heap.alloc(mats * 12);
      if (t === null) throw heapFull('matmul', mats * 12);
      table = t;
      const aIndex = batchOffsets(batch, aBatch);
      const bIndex = batchOffsets(batch, bBatch);
      const w = this.words();
      for (let i = 0; i < mats; i++) {
        w[(table >> 2) + 3 * i] = aIndex[i]! * m * k * 4;
        w[(table >> 2) + 3 * i + 1] = bIndex[i]! * k * n * 4;
        w[(table >> 2) + 3 * i + 2] = i * m * n * 4;
      }
    }
    try {
      if (rows === 1 || n === 1) this.gemv(a, b, ta, tb, rows, n, k, mats, table, out);
      else this.gemm(a, b, ta, tb, rows, n, k, mats, table, out);
    } finally {
      if (mats > 1) this.runtime.heap.free(table, mats * 12);
    }
  }

  private gemm(a: number, b: number, ta: boolean, tb: boolean, m: number, n: number, k: number, mats: number, table: number, out: number): void {
    const work = mats * m * n * k;
    // One tile per matrix on one thread. With more, split columns first (each task then packs only its own
    // part of B; A is small to repack by comparison), then rows, into whole 8-column panels and 4-row panels.
    let tileM = m;
    let tileN = n;
    const perMatrix = Math.ceil(this.tasksFor(work) / mats);
    if (perMatrix > 1) {
      const tilesN = Math.min(perMatrix, Math.ceil(n / 8));
      const tilesM = Math.min(Math.ceil(perMatrix / tilesN), Math.ceil(m / 4));
      tileN = Math.ceil(n / tilesN / 8) * 8;
      tileM = Math.ceil(m / tilesM / 4) * 4;
    }
    const tilesM = Math.ceil(m / tileM);
    const tilesN = Math.ceil(n / tileN);
    const w = this.words();
    const p = (this.args + GEMM_ARGS) >> 2;
    w[p + GemmArg.m] = m;
    w[p + GemmArg.n] = n;
    w[p + GemmArg.k] = k;
    w[p + GemmArg.a] = a;
    w[p + GemmArg.aRowStride] = ta ? 1 : k;
    w[p + GemmArg.aColStride] = ta ? m : 1;
    w[p + GemmArg.b] = b;
    w[p + GemmArg.bRowStride] = tb ? 1 : n;
    w[p + GemmArg.bColStride] = tb ? k : 1;
    w[p + GemmArg.c] = out;
    w[p + GemmArg.ldc] = n;
    w[p + GemmArg.tileM] = tileM;
    w[p + GemmArg.tileN] = tileN;
    w[p + GemmArg.tilesM] = tilesM;
    w[p + GemmArg.tilesN] = tilesN;
    w[p + GemmArg.batchTable] = table;
    w[p + GemmArg.scratch] = this.gemmScratch();
    w[p + GemmArg.scratchStride] = GEMM_SCRATCH_BYTES;
    this.run('gemm_task', mats * tilesM * tilesN, this.args + GEMM_ARGS, work);
  }

  /** m = 1 or n = 1: the vector is the contiguous operand, the matrix the other one. */
  private gemv(a: number, b: number, ta: boolean, tb: boolean, m: number, n: number, k: number, mats: number, table: number, out: number): void {
    const w = this.words();
    const p = (this.args + GEMV_ARGS) >> 2;
    let outputs: number;
    if (m === 1) {
      // x = a (1×k, contiguous either way); y[j] over B: rows along j (axpy) unless B is stored transposed.
      outputs = n;
      w[p + GemvArg.form] = tb ? 1 : 0;
      w[p + GemvArg.x] = a;
      w[p + GemvArg.mat] = b;
      w[p + GemvArg.ld] = tb ? k : n;
    } else {
      // n = 1: x = b; y[i] over A: dot with its rows, or axpy over its stored rows when A is transposed.
      outputs = m;
      w[p + GemvArg.form] = ta ? 0 : 1;
      w[p + GemvArg.x] = b;
      w[p + GemvArg.mat] = a;
      w[p + GemvArg.ld] = ta ? m : k;
      // The table holds (A, B, C) offsets and GEMV reads (x, M, y).
      if (mats > 1) swapTableColumns(w, table, mats);
    }
    const work = mats * outputs * k;
    const chunks = Math.min(Math.ceil(this.tasksFor(work) / mats), Math.ceil(outputs / 4));
    const chunk = Math.ceil(outputs / chunks / 4) * 4;
    w[p + GemvArg.n] = outputs;
    w[p + GemvArg.k] = k;
    w[p + GemvArg.y] = out;
    w[p + GemvArg.chunk] = chunk;
    w[p + GemvArg.chunks] = Math.ceil(outputs / chunk);
    w[p + GemvArg.batchTable] = table;
    this.run('gemv_task', mats * Math.ceil(outputs / chunk), this.args + GEMV_ARGS, work);
  }

  /**
   * norms[o] = ‖W + s·B·A‖ over row o of W [out, in], or over column o of W stored [in, out] (`transposeW`).
   * A [r, in], B [out, r]; all byte addresses of float32 tensors in the heap. Rows whose float32 sum may have
   * over- or underflowed come back in `suspects` for the caller to redo in float64.
   */
  weightNorm(w: number, a: number, b: number, out: number, inF: number, r: number, scale: number, transposeW: boolean, norms: number): number[] {
    const heap = this.runtime.heap;
    const threads = this.threads;
    // U rows (s·B rows, or Aᵀ rows) packed in R-row panels; V (A, or s·Bᵀ) packed in 8-column panels.
    const uRows = transposeW ? inF : out;
    const vCols = transposeW ? out : inF;
    const uBytes = Math.ceil(uRows / WN_ROWS) * WN_ROWS * r * 4;
    const vBytes = Math.floor(vCols / 8) * 8 * r * 4;
    const tailBytes = transposeW ? out * r * 4 : 0;
    const colBytes = transposeW ? out * 4 + out * 8 : 0;
    const regions = [uBytes, vBytes, tailBytes, colBytes, threads * WN_THREAD_SCRATCH];
    const bytes = regions.reduce((sum, x) => sum + align64(x), 0);
    const base = heap.alloc(bytes);
    if (base === null) throw heapFull('weightNorm', bytes);
    try {
      const at: number[] = [];
      for (let i = 0, p = base; i < regions.length; p += align64(regions[i]!), i++) at.push(p);
      const [u, vp, tail, cols, scratch] = at as [number, number, number, number, number];
      const h = new Float32Array(this.runtime.buffer);
      const a4 = a >> 2;
      const b4 = b >> 2;
      // Element (row, k) of U and (k, col) of V, as indices into the heap.
      const uAt = transposeW ? (i: number, k: number) => a4 + k * inF + i : (i: number, k: number) => b4 + i * r + k;
      const uScale = transposeW ? 1 : scale;
      const vAt = transposeW ? (k: number, j: number) => b4 + j * r + k : (k: number, j: number) => a4 + k * inF + j;
      const vScale = transposeW ? scale : 1;
      for (let p = 0, d = u >> 2; p < uBytes / (WN_ROWS * r * 4); p++) {
        for (let k = 0; k < r; k++) {
          for (let t = 0; t < WN_ROWS; t++, d++) {
            const i = p * WN_ROWS + t;
            h[d] = i < uRows ? uScale * h[uAt(i, k)]! : 0;
          }
        }
      }
      for (let p = 0, d = vp >> 2; p < vBytes / (32 * r); p++) {
        for (let k = 0; k < r; k++) for (let j = 0; j < 8; j++, d++) h[d] = vScale * h[vAt(k, p * 8 + j)]!;
      }
      if (transposeW) for (let i = 0; i < out * r; i++) h[(tail >> 2) + i] = scale * h[b4 + i]!;

      const w32 = this.words();
      const q = (this.args + WN_ARGS) >> 2;
      const work = out * inF * Math.max(r, 1);
      const tasks = this.tasksFor(work);
      const perTask = Math.ceil(out / tasks / (transposeW ? 8 : WN_ROWS)) * (transposeW ? 8 : WN_ROWS);
      w32[q + WnArg.out] = out;
      w32[q + WnArg.inF] = inF;
      w32[q + WnArg.r] = r;
      w32[q + WnArg.w] = w;
      w32[q + WnArg.u] = u;
      w32[q + WnArg.v] = vp;
      w32[q + WnArg.vTail] = transposeW ? tail : a;
      // Element (k, j) of the unpacked V: A[k·in + j], or s·B[j·r + k].
      w32[q + WnArg.vTailRowStride] = transposeW ? 1 : inF;
      w32[q + WnArg.vTailColStride] = transposeW ? r : 1;
      w32[q + WnArg.norms] = norms;
      w32[q + WnArg.perTask] = perTask;
      w32[q + WnArg.partial] = cols;
      w32[q + WnArg.total] = cols + align64(out * 4);
      w32[q + WnArg.scratch] = scratch;
      this.run(transposeW ? 'wn_cols_task' : 'wn_rows_task', Math.ceil(out / perTask), this.args + WN_ARGS, work);
    } finally {
      heap.free(base, bytes);
    }
    const result = new Float32Array(this.runtime.buffer, norms, out);
    const suspects: number[] = [];
    for (let o = 0; o < out; o++) if (!(result[o]! >= SUSPECT_NORM && result[o]! < Infinity)) suspects.push(o);
    return suspects;
  }

  dispose(): void {
    if (this.scratch) this.runtime.heap.free(this.scratch, this.scratchThreads * GEMM_SCRATCH_BYTES);
    this.scratch = 0;
    this.runtime.heap.free(this.args, ARGS_BYTES);
  }
}

function heapFull(kernel: string, bytes: number): BackendError {
  return new BackendError(`cpu ${kernel}: the wasm heap cannot hold ${bytes} more bytes of scratch (4 GiB is the wasm32 limit)`);
}

function align64(x: number): number {
  return Math.ceil(x / 64) * 64;
}

/** Swaps the A and B offsets of every entry of a batch table. */
function swapTableColumns(w: Int32Array, table: number, mats: number): void {
  for (let i = 0; i < mats; i++) {
    const e = (table >> 2) + 3 * i;
    const t = w[e]!;
    w[e] = w[e + 1]!;
    w[e + 1] = t;
  }
}
