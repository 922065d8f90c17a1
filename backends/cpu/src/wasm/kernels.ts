/**
 * The host side of the wasm kernels for one backend: writes argument blocks into the heap, splits work into
 * tasks and runs them — on the calling thread, or across the worker pool when one is running and the work is
 * large enough to pay for waking it.
 */
import { sizeOf } from '@dorajs/core';
import { batchOffsets, type MatmulShapes } from '../kernels/matmul.js';
import { GEMM_SCRATCH_BYTES, GemmArg, GemvArg } from './gemm-wasm.js';
import type { KernelVariant, TaskName, WasmRuntime } from './runtime.js';

/** Bytes of the per-backend argument area: GEMM args, GEMV args, a one-matrix batch table. */
const ARGS_BYTES = 256;
const GEMM_ARGS = 0;
const GEMV_ARGS = 128;
const UNIT_TABLE = 192;

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
    if (args === null) throw new RangeError('wasm heap exhausted');
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
      if (ptr === null) throw new RangeError('wasm heap exhausted');
      this.scratch = ptr;
      this.scratchThreads = threads;
    }
    return this.scratch;
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
      if (t === null) throw new RangeError('wasm heap exhausted');
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
    const threads = this.threads;
    const work = mats * m * n * k;
    // One tile per matrix on one thread; with more, tiles of at least 64×64 (and whole 8-column panels),
    // enough of them for every thread to take about four.
    let tileM = m;
    let tileN = n;
    if (threads > 1 && work >= this.splitThreshold) {
      const want = Math.ceil((4 * threads) / mats);
      const tilesN = Math.max(1, Math.min(Math.ceil(want / Math.max(1, Math.floor(m / 64))), Math.floor(n / 64)));
      const tilesM = Math.max(1, Math.min(Math.ceil(want / tilesN), Math.floor(m / 64)));
      tileN = Math.ceil(Math.ceil(n / tilesN) / 8) * 8;
      tileM = Math.ceil(m / tilesM);
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
    const threads = this.threads;
    const work = mats * outputs * k;
    const chunks = threads > 1 && work >= this.splitThreshold ? Math.max(1, Math.min(Math.ceil((4 * threads) / mats), Math.floor(outputs / 64))) : 1;
    const chunk = Math.ceil(outputs / chunks / 4) * 4;
    w[p + GemvArg.n] = outputs;
    w[p + GemvArg.k] = k;
    w[p + GemvArg.y] = out;
    w[p + GemvArg.chunk] = chunk;
    w[p + GemvArg.chunks] = Math.ceil(outputs / chunk);
    w[p + GemvArg.batchTable] = table;
    this.run('gemv_task', mats * Math.ceil(outputs / chunk), this.args + GEMV_ARGS, work);
  }

  dispose(): void {
    if (this.scratch) this.runtime.heap.free(this.scratch, this.scratchThreads * GEMM_SCRATCH_BYTES);
    this.scratch = 0;
    this.runtime.heap.free(this.args, ARGS_BYTES);
  }
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
