/**
 * The host side of the narrow-weight kernels (narrow-wasm.ts) for one backend: the fused GEMV at one token,
 * and — for more rows of x, the input gradient, the weight norm — W widened one panel of rows at a time into
 * a scratch (≤ PANEL_BYTES) that the float32 GEMM reads, so W is never materialised in float32 as a whole.
 */
import { code4bit, type QuantFormat } from '@dorajs/core';
import { weightNormOne } from '../kernels/fused.js';
import { heapFull, type WasmKernels, type WnNarrow } from './kernels.js';
import type { WasmRuntime } from './runtime.js';
import { codeTableBytes, NW_BF16, NW_F16, NW_INT8, NW_Q4, NW_TABLE_BYTES, NwArg } from './narrow-wasm.js';
import { WnFormat } from './weight-norm-wasm.js';

/** A narrow W in the heap: byte addresses of its stored elements and (4-bit, int8) its float32 scales. */
export interface NarrowOperand {
  readonly format: 'bfloat16' | 'float16' | QuantFormat;
  readonly rows: number;
  readonly cols: number;
  readonly data: number;
  readonly scales: number;
  readonly blocksize: number;
}

/** Per runtime (heap): the 4-bit code-pair tables, made on first use and kept while the heap lives (2 KiB each). */
const pairTables = new WeakMap<WasmRuntime, Map<'nf4' | 'fp4', number>>();

/** 256 entries of 2 float32 (8 bytes): byte b's codes, high nibble first (bitsandbytes' element order). */
export function pairTable(runtime: WasmRuntime, format: 'nf4' | 'fp4'): number {
  let tables = pairTables.get(runtime);
  if (!tables) pairTables.set(runtime, (tables = new Map()));
  let at = tables.get(format);
  if (at === undefined) {
    const p = runtime.heap.alloc(256 * 8);
    if (p === null) throw heapFull('narrow', 256 * 8);
    const code = code4bit(format);
    const t = new Float32Array(runtime.buffer, p, 512);
    for (let b = 0; b < 256; b++) {
      t[2 * b] = code[b >> 4]!;
      t[2 * b + 1] = code[b & 15]!;
    }
    at = p;
    tables.set(format, at);
  }
  return at;
}

/** Widened panels stay this small (L2-sized), whatever the size of W. */
const PANEL_BYTES = 1 << 20;

export class NarrowKernels {
  private readonly args: number;
  private readonly tables: number;

  constructor(private readonly k: WasmKernels) {
    const heap = k.runtime.heap;
    const args = heap.alloc(NwArg.words * 4 + 2 * NW_TABLE_BYTES);
    if (args === null) throw heapFull('narrow', NwArg.words * 4 + 2 * NW_TABLE_BYTES);
    this.args = args;
    this.tables = args + NwArg.words * 4;
    const bytes = new Uint8Array(k.runtime.buffer);
    bytes.set(codeTableBytes(code4bit('nf4')), this.tables);
    bytes.set(codeTableBytes(code4bit('fp4')), this.tables + NW_TABLE_BYTES);
  }

  private setArgs(w: NarrowOperand, extra: Partial<Record<keyof typeof NwArg, number>>): void {
    const words = new Int32Array(this.k.runtime.buffer, this.args, NwArg.words);
    const fmt = w.format === 'bfloat16' ? NW_BF16 : w.format === 'float16' ? NW_F16 : w.format === 'int8' ? NW_INT8 : NW_Q4;
    words[NwArg.format] = fmt;
    words[NwArg.rows] = w.rows;
    words[NwArg.cols] = w.cols;
    words[NwArg.data] = w.data;
    words[NwArg.scales] = w.scales;
    words[NwArg.blockShift] = fmt === NW_Q4 ? Math.log2(w.blocksize) : 0;
    words[NwArg.table] = this.tables + (w.format === 'fp4' ? NW_TABLE_BYTES : 0);
    for (const [key, v] of Object.entries(extra)) words[NwArg[key as keyof typeof NwArg]] = v!;
  }

  /** Rows [row0, row1) of W widened into float32 at `out` (exactly the dequantized values). */
  decodeRows(w: NarrowOperand, row0: number, row1: number, out: number): void {
    const n = row1 - row0;
    if (n <= 0) return;
    const work = n * w.cols;
    const tasks = Math.min(n, this.k.taskCount(work));
    const perTask = Math.ceil(n / tasks);
    this.setArgs(w, { out, row0, row1, perTask });
    this.k.runTasks('nw_decode_task', Math.ceil(n / perTask), this.args, work);
  }

  /** Whether the fused GEMV reads this W in place (every format and shape: 4-bit blocks may straddle rows). */
  gemvApplies(_w: NarrowOperand): boolean {
    return true;
  }

  /** y [rows] = W · x for one x [cols] (x·Wᵀ at one token). */
  gemv(w: NarrowOperand, x: number, y: number): void {
    const work = w.rows * w.cols;
    const tasks = Math.min(Math.ceil(w.rows / 4), this.k.taskCount(work));
    // Whole pairs of rows per task (the 4-bit kernel reads two rows per pass).
    const perTask = 2 * Math.ceil(w.rows / tasks / 2);
    const q4 = w.format === 'nf4' || w.format === 'fp4';
    const pairs = q4 ? pairTable(this.k.runtime, w.format as 'nf4' | 'fp4') : 0;
    // 16-bit W: x split by parity per group of 8 first (nw_xsplit_task, on this thread).
    const splitBytes = w.format === 'bfloat16' || w.format === 'float16' ? Math.max(4, (w.cols >>> 3) * 32) : 0;
    const xsplit = splitBytes > 0 ? this.k.runtime.heap.alloc(splitBytes) : 0;
    if (xsplit === null) throw heapFull('narrow', splitBytes);
    try {
      this.setArgs(w, { out: y, x, perTask, pairs, xsplit });
      if (splitBytes > 0) this.k.runTasks('nw_xsplit_task', 1, this.args, 0);
      this.k.runTasks('nw_gemv_task', Math.ceil(w.rows / perTask), this.args, work);
    } finally {
      if (splitBytes > 0) this.k.runtime.heap.free(xsplit, splitBytes);
    }
  }

  /** Rows per widened panel. */
  private panelRows(w: NarrowOperand): number {
    return Math.max(1, Math.min(w.rows, Math.floor(PANEL_BYTES / (4 * Math.max(1, w.cols)))));
  }

  /** Runs `body(panel, r0, r1)` over W in widened panels of rows; the scratch is freed afterwards. */
  private panels(w: NarrowOperand, body: (panel: number, r0: number, r1: number) => void): void {
    const rows = this.panelRows(w);
    const bytes = rows * w.cols * 4;
    const panel = this.k.runtime.heap.alloc(bytes);
    if (panel === null) throw heapFull('narrow', bytes);
    try {
      for (let r0 = 0; r0 < w.rows; r0 += rows) {
        const r1 = Math.min(w.rows, r0 + rows);
        this.decodeRows(w, r0, r1, panel);
        body(panel, r0, r1);
      }
    } finally {
      this.k.runtime.heap.free(panel, bytes);
    }
  }

  /**
   * transposeW: y [m, rows] = x [m, cols] · Wᵀ; else y [m, cols] = x [m, rows] · W (the input gradient).
   * All float32 byte addresses in the heap; y is fully written.
   */
  matmul(w: NarrowOperand, x: number, m: number, transposeW: boolean, y: number): void {
    if (m === 0) return;
    if (transposeW && m === 1 && this.gemvApplies(w)) {
      this.gemv(w, x, y);
      return;
    }
    const { rows, cols } = w;
    if (!transposeW && rows === 0) {
      new Float32Array(this.k.runtime.buffer, y, m * cols).fill(0);
      return;
    }
    this.panels(w, (panel, r0, r1) => {
      const n = r1 - r0;
      if (transposeW) {
        // y[:, r0:r1] = x · panelᵀ (panel element (k, j) at panel + (j·cols + k)·4)
        this.k.gemmStrided(m, n, cols, x, cols, 1, panel, 1, cols, y + r0 * 4, rows, false);
      } else {
        // y += x[:, r0:r1] · panel
        this.k.gemmStrided(m, cols, n, x + r0 * 4, rows, 1, panel, cols, 1, y, cols, r0 > 0);
      }
    });
  }

  /** out [ids.length, cols] = the widened rows of W picked by ids (already range-checked). */
  gather(w: NarrowOperand, ids: Int32Array, out: number): void {
    for (let i = 0; i < ids.length; i++) this.decodeRows(w, ids[i]!, ids[i]! + 1, out + i * w.cols * 4);
  }

  /**
   * norms = ‖W + s·B·A‖ per output feature with a narrow W: W [out, in] (rows) or stored [in, out]
   * (transposeW, norms per column). A [r, in], B [out, r] float32 in the heap at `a`, `b`. W is widened in
   * registers by the fused kernel (weight-norm-wasm.ts); a 4-bit W whose rows are not whole vectors (cols % 8)
   * goes one widened panel of rows at a time instead.
   */
  weightNorm(w: NarrowOperand, a: number, b: number, r: number, scale: number, transposeW: boolean, norms: number): void {
    const q4 = w.format === 'nf4' || w.format === 'fp4';
    if (q4 && w.cols % 8 !== 0) {
      this.weightNormPanels(w, a, b, r, scale, transposeW, norms);
      return;
    }
    const [out, inF] = transposeW ? [w.cols, w.rows] : [w.rows, w.cols];
    const narrow: WnNarrow = {
      format: q4 ? WnFormat.q4 : WnFormat[w.format as 'bfloat16' | 'float16' | 'int8'],
      scales: w.scales,
      shift: q4 ? Math.log2(w.blocksize) : 0,
      pairs: q4 ? pairTable(this.k.runtime, w.format as 'nf4' | 'fp4') : 0,
    };
    const suspects = this.k.weightNorm(w.data, a, b, out, inF, r, scale, transposeW, norms, narrow);
    if (suspects.length > 0) this.redoInFloat64(w, a, b, r, scale, transposeW, norms, suspects);
  }

  /** Norms whose float32 squares may have over- or underflowed, redone in float64 from widened rows of W. */
  private redoInFloat64(
    w: NarrowOperand,
    a: number,
    b: number,
    r: number,
    scale: number,
    transposeW: boolean,
    norms: number,
    suspects: readonly number[],
  ): void {
    const heap = () => new Float32Array(this.k.runtime.buffer);
    const inF = transposeW ? w.rows : w.cols;
    const av = () => heap().subarray(a >>> 2, (a >>> 2) + r * inF);
    const bRow = (o: number) => heap().subarray((b >>> 2) + o * r, (b >>> 2) + (o + 1) * r);
    if (!transposeW) {
      const bytes = w.cols * 4;
      const row = this.k.runtime.heap.alloc(bytes);
      if (row === null) throw heapFull('weightNorm', bytes);
      try {
        for (const o of suspects) {
          this.decodeRows(w, o, o + 1, row);
          const rv = heap().subarray(row >>> 2, (row >>> 2) + w.cols);
          heap()[(norms >>> 2) + o] = weightNormOne(rv, av(), bRow(o), 1, inF, r, scale, false, 0);
        }
      } finally {
        this.k.runtime.heap.free(row, bytes);
      }
      return;
    }
    // Stored [in, out]: the suspect columns, gathered from widened panels of rows.
    const columns = suspects.map(() => new Float32Array(inF));
    this.panels(w, (panel, i0, i1) => {
      const pv = heap();
      for (let i = i0; i < i1; i++) {
        const at = (panel >>> 2) + (i - i0) * w.cols;
        suspects.forEach((o, s) => {
          columns[s]![i] = pv[at + o]!;
        });
      }
    });
    suspects.forEach((o, s) => {
      heap()[(norms >>> 2) + o] = weightNormOne(columns[s]!, av(), bRow(o), 1, inF, r, scale, true, 0);
    });
  }

  /** weightNorm one widened panel of rows at a time (a 4-bit W with blocks straddling rows). */
  private weightNormPanels(w: NarrowOperand, a: number, b: number, r: number, scale: number, transposeW: boolean, norms: number): void {
    const heap = new Float32Array(this.k.runtime.buffer);
    if (!transposeW) {
      // One panel of rows at a time through the fused float32 kernel; suspects (float32 squares that may
      // have over- or underflowed) are redone in float64 from the panel.
      const inF = w.cols;
      this.panels(w, (panel, r0, r1) => {
        const n = r1 - r0;
        const suspects = this.k.weightNorm(panel, a, b + r0 * r * 4, n, inF, r, scale, false, norms + r0 * 4);
        if (suspects.length === 0) return;
        const pv = heap.subarray(panel >>> 2, (panel >>> 2) + n * inF);
        const av = heap.subarray(a >>> 2, (a >>> 2) + r * inF);
        const bv = heap.subarray((b >>> 2) + r0 * r, (b >>> 2) + r1 * r);
        for (const o of suspects) heap[(norms >>> 2) + r0 + o] = weightNormOne(pv, av, bv, n, inF, r, scale, false, o);
      });
      return;
    }
    // Stored [in, out]: each panel of stored rows gets s·(B·A)ᵀ added by the GEMM, then its squares are
    // summed per column in float64.
    const out = w.cols;
    const totals = new Float64Array(out);
    const sbBytes = out * r * 4;
    const sb = this.k.runtime.heap.alloc(Math.max(4, sbBytes));
    if (sb === null) throw heapFull('weightNorm', sbBytes);
    try {
      for (let i = 0; i < out * r; i++) heap[(sb >>> 2) + i] = Math.fround(scale * heap[(b >>> 2) + i]!);
      const inF = w.rows;
      this.panels(w, (panel, i0, i1) => {
        const n = i1 - i0;
        // panel[i, j] += Σ_k A[k, i0 + i] · sB[j, k]
        if (r > 0) this.k.gemmStrided(n, out, r, a + i0 * 4, 1, inF, sb, 1, r, panel, out, true);
        const p = panel >>> 2;
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < out; j++) {
            const v = heap[p + i * out + j]!;
            totals[j] = totals[j]! + v * v;
          }
        }
      });
      for (let j = 0; j < out; j++) heap[(norms >>> 2) + j] = Math.sqrt(totals[j]!);
    } finally {
      this.k.runtime.heap.free(sb, Math.max(4, sbBytes));
    }
  }
}
