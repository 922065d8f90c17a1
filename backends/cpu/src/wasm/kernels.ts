/**
 * The host side of the wasm kernels for one backend: writes argument blocks into the heap, splits work into
 * tasks and runs them — on the calling thread, or across the worker pool when one is running and the work is
 * large enough to pay for waking it.
 */
import { BackendError, sizeOf } from '@dorajs/core';
import type { ConvGeometry } from '../kernels/conv2d.js';
import { batchOffsets, type MatmulShapes } from '../kernels/matmul.js';
import type { BroadcastPlan } from '../kernels/broadcast.js';
import {
  EwArg,
  MAP_F64_AT,
  MapArg,
  RED_SCALE_AT,
  RedArg,
  type WasmBinaryOp,
  type WasmReduceOp,
  type WasmUnaryOp,
} from './elementwise-wasm.js';
import { GEMM_SCRATCH_BYTES, GEMM_SHAPE, GemmArg, GemvArg, KC, MC, NC } from './gemm-wasm.js';
import { ConvArg } from './im2col-wasm.js';
import { WN_ROWS, WN_THREAD_SCRATCH, WnArg, WnFormat } from './weight-norm-wasm.js';
import type { KernelVariant, TaskName, WasmRuntime } from './runtime.js';

/** A narrow W for the fused norm: `w` is then the address of its stored elements (weight-norm-wasm.ts WnFormat). */
export interface WnNarrow {
  readonly format: (typeof WnFormat)[keyof typeof WnFormat];
  /** int8 SCB per stored row, or 4-bit absmax per block. */
  readonly scales: number;
  /** 4-bit: log2 of the block size. */
  readonly shift: number;
  /** 4-bit: the code-pair table (narrow-host.ts pairTable). */
  readonly pairs: number;
}

/** The per-backend argument area: one 128-byte slot per kernel family, and a one-matrix batch table. */
const GEMM_ARGS = 0;
const GEMV_ARGS = 128;
const WN_ARGS = 256;
const EW_ARGS = 384;
const MAP_ARGS = 512;
const RED_ARGS = 640;
const UNIT_TABLE = 768;
const CONV_ARGS = 832;
const ARGS_BYTES = 896;
/** Elements per row when one long row is cut into rows for tasks: 64 KiB of float32. */
const ROW_CHUNK = 16384;
/** Shared-B GEMM: the packed column block of B stays under this many bytes (16 MiB: K = 4096 at NC columns). */
const SHARED_B_BYTES = 1 << 24;
/** Tasks per thread to aim for where tasks repeat no work (small tasks balance threads that run at unequal speeds). */
const SHARED_TASKS_PER_THREAD = 8;
/** Shared-B GEMM: the smallest row tile (each reads the whole packed block, so it must do enough with it). */
const SHARED_MIN_ROWS = 32;
/** Shared-B GEMM: the narrowest column tile when A is short. */
const SHARED_MIN_COLS = 64;
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
    this.words().fill(0, args >>> 2, (args + ARGS_BYTES) >>> 2);
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

  /** Runs `tasks` of kernel `name` (one argument block) across the threads when `work` is worth it. */
  runTasks(name: TaskName, tasks: number, args: number, work: number): void {
    this.run(name, tasks, args, work);
  }

  /** How many tasks to cut `work` multiply-adds into (see tasksFor). */
  taskCount(work: number): number {
    return this.tasksFor(work);
  }

  private run(name: TaskName, tasks: number, args: number, work: number): void {
    if (this.runner && tasks > 1 && work >= this.splitThreshold) {
      this.runner.run(name, tasks, args);
      return;
    }
    const fn = this.variant.task(name);
    for (let t = 0; t < tasks; t++) fn(t, args, 0);
  }

  /**
   * out = a·b (each optionally transposed) over the last two axes, leading axes broadcast. All three are byte
   * addresses of dense row-major float32 tensors in the heap; `out` is fully written.
   */
  matmul(
    a: number,
    aShape: readonly number[],
    b: number,
    bShape: readonly number[],
    ta: boolean,
    tb: boolean,
    s: MatmulShapes,
    out: number,
  ): void {
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
        w[(table >>> 2) + 3 * i] = aIndex[i]! * m * k * 4;
        w[(table >>> 2) + 3 * i + 1] = bIndex[i]! * k * n * 4;
        w[(table >>> 2) + 3 * i + 2] = i * m * n * 4;
      }
    }
    try {
      if (rows === 1 || n === 1) this.gemv(a, b, ta, tb, rows, n, k, mats, table, out);
      else this.gemm(a, b, ta, tb, rows, n, k, mats, table, out);
    } finally {
      if (mats > 1) this.runtime.heap.free(table, mats * 12);
    }
  }

  private gemm(
    a: number,
    b: number,
    ta: boolean,
    tb: boolean,
    m: number,
    n: number,
    k: number,
    mats: number,
    table: number,
    out: number,
    strided?: { ars: number; acs: number; brs: number; bcs: number; ldc: number; accumulate: boolean },
  ): void {
    const work = mats * m * n * k;
    const w = this.words();
    const p = (this.args + GEMM_ARGS) >>> 2;
    w[p + GemmArg.m] = m;
    w[p + GemmArg.n] = n;
    w[p + GemmArg.k] = k;
    w[p + GemmArg.a] = a;
    w[p + GemmArg.aRowStride] = strided ? strided.ars : ta ? 1 : k;
    w[p + GemmArg.aColStride] = strided ? strided.acs : ta ? m : 1;
    w[p + GemmArg.b] = b;
    w[p + GemmArg.bRowStride] = strided ? strided.brs : tb ? 1 : n;
    w[p + GemmArg.bColStride] = strided ? strided.bcs : tb ? k : 1;
    w[p + GemmArg.c] = out;
    w[p + GemmArg.ldc] = strided ? strided.ldc : n;
    w[p + GemmArg.batchTable] = table;
    w[p + GemmArg.scratch] = this.gemmScratch();
    w[p + GemmArg.scratchStride] = GEMM_SCRATCH_BYTES;
    w[p + GemmArg.accumulate] = strided?.accumulate ? 1 : 0;
    if (mats === 1 && m >= 2 * SHARED_MIN_ROWS && this.tasksFor(work) > 1 && this.gemmSharedB(m, n, k, work)) return;
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
    w[p + GemmArg.tileM] = tileM;
    w[p + GemmArg.tileN] = tileN;
    w[p + GemmArg.tilesM] = Math.ceil(m / tileM);
    w[p + GemmArg.tilesN] = Math.ceil(n / tileN);
    this.run('gemm_task', mats * Math.ceil(m / tileM) * Math.ceil(n / tileN), this.args + GEMM_ARGS, work);
  }

  /**
   * One product across the threads with B packed once per column block into a shared buffer (see
   * gemm-wasm.ts): fine row tiles balance the threads while A and B are each packed once, as on one thread.
   * Returns false (nothing done) when the heap has no room for the buffer.
   */
  private gemmSharedB(m: number, n: number, k: number, work: number): boolean {
    const nr = 4 * GEMM_SHAPE.nv;
    const roundUp = (x: number, to: number) => Math.ceil(x / to) * to;
    // Column block: as wide as the single-thread GEMM's (NC), narrower when K is long, so the buffer stays small.
    const blockCols = Math.min(roundUp(n, nr), NC, Math.max(nr, Math.floor(SHARED_B_BYTES / (4 * k) / nr) * nr));
    const bytes = k * blockCols * 4;
    const packed = this.runtime.heap.alloc(bytes);
    if (packed === null) return false;
    try {
      const target = SHARED_TASKS_PER_THREAD * this.threads;
      const rowsPerTask = Math.min(MC, Math.max(SHARED_MIN_ROWS, roundUp(Math.ceil(m / target), GEMM_SHAPE.mr)));
      const rowTasks = Math.ceil(m / rowsPerTask);
      const w = this.words();
      const p = (this.args + GEMM_ARGS) >>> 2;
      w[p + GemmArg.packed] = packed;
      w[p + GemmArg.rowsPerTask] = rowsPerTask;
      for (let jc = 0; jc < n; jc += blockCols) {
        const nc = Math.min(blockCols, n - jc);
        // Few row tiles (a short A): split the block's columns too, into whole panels.
        const colTasks = rowTasks >= target ? 1 : Math.max(1, Math.min(Math.ceil(target / rowTasks), Math.floor(nc / SHARED_MIN_COLS)));
        const colsPerTask = roundUp(Math.ceil(nc / colTasks), nr);
        w[p + GemmArg.jc] = jc;
        w[p + GemmArg.nc] = nc;
        w[p + GemmArg.colsPerTask] = colsPerTask;
        w[p + GemmArg.colTasks] = Math.ceil(nc / colsPerTask);
        this.run('gemm_pack_task', Math.ceil(k / KC), this.args + GEMM_ARGS, work);
        this.run('gemm_block_task', rowTasks * Math.ceil(nc / colsPerTask), this.args + GEMM_ARGS, work);
      }
    } finally {
      this.runtime.heap.free(packed, bytes);
    }
    return true;
  }

  /**
   * C (+)= A·B for one strided product (the conv2d kernels' GEMMs): A element (i, p) at byte address
   * a + (i·ars + p·acs)·4, B likewise, C rows `ldc` elements apart.
   */
  gemmStrided(
    m: number,
    n: number,
    k: number,
    a: number,
    ars: number,
    acs: number,
    b: number,
    brs: number,
    bcs: number,
    c: number,
    ldc: number,
    accumulate: boolean,
  ): void {
    if (m === 0 || n === 0) return;
    if (k === 0) {
      if (!accumulate) for (let i = 0; i < m; i++) new Float32Array(this.runtime.buffer, c + i * ldc * 4, n).fill(0);
      return;
    }
    this.gemm(a, b, false, false, m, n, k, 1, this.args + UNIT_TABLE, c, { ars, acs, brs, bcs, ldc, accumulate });
  }

  /** m = 1 or n = 1: the vector is the contiguous operand, the matrix the other one. */
  private gemv(
    a: number,
    b: number,
    ta: boolean,
    tb: boolean,
    m: number,
    n: number,
    k: number,
    mats: number,
    table: number,
    out: number,
  ): void {
    const w = this.words();
    const p = (this.args + GEMV_ARGS) >>> 2;
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
   * conv2d's column matrix of one image's group of input planes (byte address x) into cols, or (`col2im`)
   * its adjoint added into the planes at x; both are [cg·kh·kw, oh·ow] as in kernels/conv2d.ts.
   */
  im2col(x: number, cols: number, g: ConvGeometry): void {
    const rows = g.cg * g.kh * g.kw;
    const work = rows * g.oh * g.ow;
    const tasks = Math.min(rows, this.tasksFor(work));
    this.convArgs(x, cols, g, Math.ceil(rows / tasks));
    this.run('im2col_task', Math.ceil(rows / Math.ceil(rows / tasks)), this.args + CONV_ARGS, work);
  }

  col2im(cols: number, x: number, g: ConvGeometry): void {
    const work = g.cg * g.kh * g.kw * g.oh * g.ow;
    // Tasks own whole channels: every row of a channel adds into that channel's plane only.
    const tasks = Math.min(g.cg, this.tasksFor(work));
    this.convArgs(x, cols, g, Math.ceil(g.cg / tasks));
    this.run('col2im_task', Math.ceil(g.cg / Math.ceil(g.cg / tasks)), this.args + CONV_ARGS, work);
  }

  private convArgs(x: number, cols: number, g: ConvGeometry, perTask: number): void {
    const w = this.words();
    const q = (this.args + CONV_ARGS) >>> 2;
    const { p } = g;
    w[q + ConvArg.x] = x;
    w[q + ConvArg.cols] = cols;
    w[q + ConvArg.cg] = g.cg;
    w[q + ConvArg.h] = g.h;
    w[q + ConvArg.w] = g.w;
    w[q + ConvArg.kh] = g.kh;
    w[q + ConvArg.kw] = g.kw;
    w[q + ConvArg.oh] = g.oh;
    w[q + ConvArg.ow] = g.ow;
    w[q + ConvArg.sh] = p.stride[0];
    w[q + ConvArg.sw] = p.stride[1];
    w[q + ConvArg.ph] = p.padding[0];
    w[q + ConvArg.pw] = p.padding[1];
    w[q + ConvArg.dh] = p.dilation[0];
    w[q + ConvArg.dw] = p.dilation[1];
    w[q + ConvArg.perTask] = perTask;
  }

  /**
   * norms[o] = ‖W + s·B·A‖ over row o of W [out, in], or over column o of W stored [in, out] (`transposeW`).
   * A [r, in], B [out, r]; all byte addresses of float32 tensors in the heap. With `narrow`, W is stored
   * narrow at `w` and widened in registers. Rows whose float32 sum may have over- or underflowed come back in
   * `suspects` for the caller to redo in float64.
   */
  weightNorm(
    w: number,
    a: number,
    b: number,
    out: number,
    inF: number,
    r: number,
    scale: number,
    transposeW: boolean,
    norms: number,
    narrow?: WnNarrow,
  ): number[] {
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
      const a4 = a >>> 2;
      const b4 = b >>> 2;
      // U element (row i, k) and V element (k, column j), as strides over the heap's float32 indices.
      if (transposeW) {
        packPanels(h, a4, 1, inF, uRows, r, WN_ROWS, 1, u >>> 2, Math.ceil(uRows / WN_ROWS));
        packPanels(h, b4, r, 1, vCols, r, 8, scale, vp >>> 2, Math.floor(vCols / 8));
      } else {
        packPanels(h, b4, r, 1, uRows, r, WN_ROWS, scale, u >>> 2, Math.ceil(uRows / WN_ROWS));
        packPanels(h, a4, 1, inF, vCols, r, 8, 1, vp >>> 2, Math.floor(vCols / 8));
      }
      if (transposeW) for (let i = 0; i < out * r; i++) h[(tail >>> 2) + i] = scale * h[b4 + i]!;

      const w32 = this.words();
      const q = (this.args + WN_ARGS) >>> 2;
      const work = out * inF * Math.max(r, 1);
      // Tasks share nothing but the small packed factors, so many small ones cost nothing and balance threads
      // that run at unequal speeds (a busy machine).
      const tasks = this.tasksFor(work) > 1 ? SHARED_TASKS_PER_THREAD * threads : 1;
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
      w32[q + WnArg.format] = narrow?.format ?? WnFormat.float32;
      w32[q + WnArg.wScales] = narrow?.scales ?? 0;
      w32[q + WnArg.wShift] = narrow?.shift ?? 0;
      w32[q + WnArg.wPairs] = narrow?.pairs ?? 0;
      this.run(transposeW ? 'wn_cols_task' : 'wn_rows_task', Math.ceil(out / perTask), this.args + WN_ARGS, work);
    } finally {
      heap.free(base, bytes);
    }
    const result = new Float32Array(this.runtime.buffer, norms, out);
    const suspects: number[] = [];
    for (let o = 0; o < out; o++) if (!(result[o]! >= SUSPECT_NORM && result[o]! < Infinity)) suspects.push(o);
    return suspects;
  }

  /**
   * out = a (op) b over a broadcast plan whose inner strides are 0 or 1 (false when they are not: the caller
   * then runs the typed-array kernel). All float32, byte addresses in the heap.
   */
  binary(op: WasmBinaryOp, a: number, b: number, out: number, plan: BroadcastPlan): boolean {
    const [sa, sb] = plan.innerStrides as [number, number];
    if ((sa !== 0 && sa !== 1) || (sb !== 0 && sb !== 1)) return false;
    const total = plan.rows * plan.rowLength;
    if (total === 0) return true;
    // One long row is cut into rows of ROW_CHUNK so tasks can split it.
    const chunked = plan.rows === 1 && plan.rowLength > ROW_CHUNK;
    const n = chunked ? ROW_CHUNK : plan.rowLength;
    const rows = chunked ? Math.ceil(total / n) : plan.rows;
    const tables = this.runtime.heap.alloc(rows * 8);
    if (tables === null) throw heapFull(`${op}`, rows * 8);
    try {
      const w = this.words();
      const ta = tables >>> 2;
      const tb = ta + rows;
      for (let r = 0; r < rows; r++) {
        w[ta + r] = chunked ? r * n * sa : plan.rowOffsets[0]![r]!;
        w[tb + r] = chunked ? r * n * sb : plan.rowOffsets[1]![r]!;
      }
      const tasks = Math.min(rows, this.tasksFor(total));
      const q = (this.args + EW_ARGS) >>> 2;
      w[q + EwArg.rows] = rows;
      w[q + EwArg.n] = n;
      w[q + EwArg.a] = a;
      w[q + EwArg.b] = b;
      w[q + EwArg.out] = out;
      w[q + EwArg.offsA] = tables;
      w[q + EwArg.offsB] = tables + rows * 4;
      w[q + EwArg.strides] = (sa ? 0 : 2) + (sb ? 0 : 1);
      w[q + EwArg.rowsPerTask] = Math.ceil(rows / tasks);
      w[q + EwArg.total] = total;
      this.run(`ew_${op}`, Math.ceil(rows / Math.ceil(rows / tasks)), this.args + EW_ARGS, total);
    } finally {
      this.runtime.heap.free(tables, rows * 8);
    }
    return true;
  }

  /** Elementwise maps over n float32 values: a unary op, affine (x·scale + offset) or doraCompose. */
  unary(op: WasmUnaryOp, x: number, out: number, n: number): void {
    this.map(`un_${op}`, x, out, n, 4);
  }

  affine(x: number, out: number, n: number, scale: number, offset: number): void {
    const f = new Float64Array(this.runtime.buffer, this.args + MAP_ARGS + MAP_F64_AT, 2);
    f[0] = scale;
    f[1] = offset;
    this.map('map_affine', x, out, n, 4);
  }

  /** y = bias + g ⊙ (base + scale·lora) with g and bias of length `cols` (bias 0: none). */
  doraCompose(base: number, lora: number, g: number, bias: number, scale: number, out: number, n: number, cols: number): void {
    const w = this.words();
    const q = (this.args + MAP_ARGS) >>> 2;
    w[q + MapArg.lora] = lora;
    w[q + MapArg.g] = g;
    w[q + MapArg.bias] = bias;
    w[q + MapArg.cols] = cols;
    new Float64Array(this.runtime.buffer, this.args + MAP_ARGS + MAP_F64_AT, 1)[0] = scale;
    // Tasks take whole rows, so the column index restarts at 0 in each.
    this.map('map_dora_compose', base, out, n, cols);
  }

  private map(name: string, x: number, out: number, n: number, unit: number): void {
    if (n === 0) return;
    const units = Math.ceil(n / unit);
    const tasks = Math.min(units, this.tasksFor(n));
    const perTask = Math.ceil(units / tasks) * unit;
    const w = this.words();
    const q = (this.args + MAP_ARGS) >>> 2;
    w[q + MapArg.n] = n;
    w[q + MapArg.x] = x;
    w[q + MapArg.out] = out;
    w[q + MapArg.perTask] = perTask;
    this.run(name, Math.ceil(n / perTask), this.args + MAP_ARGS, n);
  }

  /**
   * out[o, i] = op over k of x[o, k, i] for x viewed [outer, len, inner] (len ≥ 1 for max/min); a sum is
   * multiplied by `scale` (1/len for a mean) in float64 before rounding.
   */
  reduce(op: WasmReduceOp, x: number, out: number, outer: number, len: number, inner: number, scale: number): void {
    if (outer === 0 || inner === 0) return;
    const total = outer * len * inner;
    const w = this.words();
    const q = (this.args + RED_ARGS) >>> 2;
    w[q + RedArg.outer] = outer;
    w[q + RedArg.len] = len;
    w[q + RedArg.inner] = inner;
    w[q + RedArg.x] = x;
    w[q + RedArg.out] = out;
    new Float64Array(this.runtime.buffer, this.args + RED_ARGS + RED_SCALE_AT, 1)[0] = scale;
    if (inner === 1) {
      const tasks = Math.min(outer, this.tasksFor(total));
      w[q + RedArg.perTask] = Math.ceil(outer / tasks);
      this.run(`red_rows_${op}`, Math.ceil(outer / Math.ceil(outer / tasks)), this.args + RED_ARGS, total);
      return;
    }
    const accBytes = op === 'sum' ? inner * 8 : 0;
    const acc = accBytes ? this.runtime.heap.alloc(accBytes) : 0;
    if (acc === null) throw heapFull(op, accBytes);
    try {
      const tasks = Math.min(Math.ceil(inner / 4), this.tasksFor(total));
      const perTask = Math.ceil(inner / tasks / 4) * 4;
      w[q + RedArg.perTask] = perTask;
      w[q + RedArg.acc] = acc;
      this.run(`red_cols_${op}`, Math.ceil(inner / perTask), this.args + RED_ARGS, total);
    } finally {
      if (acc) this.runtime.heap.free(acc, accBytes);
    }
  }

  /** out = softmax of each of `rows` rows of `n` float32 values (n ≥ 1). */
  /** softmax (or log-softmax) over each of `rows` rows of n floats. */
  softmax(x: number, out: number, rows: number, n: number, log = false): void {
    if (rows === 0) return;
    const w = this.words();
    const q = (this.args + RED_ARGS) >>> 2;
    w[q + RedArg.outer] = rows;
    w[q + RedArg.len] = n;
    w[q + RedArg.x] = x;
    w[q + RedArg.out] = out;
    // exp costs about ten multiply-adds per element: count that as the work.
    const tasks = Math.min(rows, this.tasksFor(rows * n * 10));
    w[q + RedArg.perTask] = Math.ceil(rows / tasks);
    this.run(log ? 'log_softmax_rows' : 'softmax_rows', Math.ceil(rows / Math.ceil(rows / tasks)), this.args + RED_ARGS, rows * n * 10);
  }

  dispose(): void {
    if (this.scratch) this.runtime.heap.free(this.scratch, this.scratchThreads * GEMM_SCRATCH_BYTES);
    this.scratch = 0;
    this.runtime.heap.free(this.args, ARGS_BYTES);
  }
}

/**
 * Packs `panels` panels of `width` lines, k-major: dst[p][k][t] = scale · h[src + (p·width + t)·lineStride +
 * k·kStride] for lines below `lines` (zero past them), k < depth. Plain index loops: this runs on the calling
 * thread before every weight norm, so it must not cost a closure call per element.
 */
function packPanels(
  h: Float32Array,
  src: number,
  lineStride: number,
  kStride: number,
  lines: number,
  depth: number,
  width: number,
  scale: number,
  dst: number,
  panels: number,
): void {
  let d = dst;
  for (let p = 0; p < panels; p++) {
    const first = p * width;
    const n = Math.min(width, lines - first);
    for (let k = 0; k < depth; k++) {
      let s = src + first * lineStride + k * kStride;
      for (let t = 0; t < n; t++, s += lineStride) h[d + t] = scale * h[s]!;
      for (let t = n; t < width; t++) h[d + t] = 0;
      d += width;
    }
  }
}

export function heapFull(kernel: string, bytes: number): BackendError {
  return new BackendError(`cpu ${kernel}: the wasm heap cannot hold ${bytes} more bytes of scratch (4 GiB is the wasm32 limit)`);
}

function align64(x: number): number {
  return Math.ceil(x / 64) * 64;
}

/** Swaps the A and B offsets of every entry of a batch table. */
function swapTableColumns(w: Int32Array, table: number, mats: number): void {
  for (let i = 0; i < mats; i++) {
    const e = (table >>> 2) + 3 * i;
    const t = w[e]!;
    w[e] = w[e + 1]!;
    w[e + 1] = t;
  }
}
