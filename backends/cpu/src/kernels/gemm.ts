/**
 * Single-precision GEMM on typed arrays: C (+)= A·B with A m×k and B k×n given by offset and row/column
 * strides (so every transpose is just a choice of strides and never a copy).
 *
 * Large products follow the Goto/BLIS scheme: B is packed per KC×NC block and A per MC×KC block into
 * contiguous panels, and a 4×2 register-blocked micro-kernel (asm.js, see asm-kernel.ts) runs over the
 * panels. The panels are float64: JavaScript multiplies in float64 anyway, so converting once while
 * packing saves a conversion per use in the micro-kernel, and products accumulate in float64 (one
 * float32 rounding per K block). M = 1 and N = 1 take streaming GEMV paths; tiny products a plain loop.
 */
import { type MicroKernel, MicroKernelModule } from './asm-kernel.js';

const MR = 4;
const NR = 2;
/** K block: a 4×KC and a KC×2 float64 panel (8 and 4 KiB) stay in L1 during the micro-kernel. */
const KC = 256;
/** M block: the packed MC×KC block of A (256 KiB) stays in L2. */
const MC = 128;
/** N block: the packed KC×NC block of B (2 MiB). */
const NC = 1024;
/** Below this many multiply-adds, packing costs more than it saves. */
const SMALL = 32 * 32 * 32;

/** A strided matrix operand: element (i, j) is at data[offset + i·rowStride + j·colStride]. */
export interface Operand {
  readonly data: Float32Array;
  readonly offset: number;
  readonly rowStride: number;
  readonly colStride: number;
}

/** Heap layout, in float64 elements: the packed A block, the packed B block, the MC×NC result block. */
const B_AT = MC * KC;
const C_AT = B_AT + NC * KC;
/** asm.js heaps are a power of two of at least 4 KiB: 4 MiB holds the 3.25 MiB of blocks. */
const HEAP_BYTES = 1 << 22;

let heap: { values: Float64Array; micro: MicroKernel } | null = null;

/** The packing buffer and the micro-kernel bound to it, created on the first blocked product. */
function packingHeap(): { values: Float64Array; micro: MicroKernel } {
  if (!heap) {
    const buffer = new ArrayBuffer(HEAP_BYTES);
    heap = { values: new Float64Array(buffer), micro: MicroKernelModule(globalThis, null, buffer) };
  }
  return heap;
}

/**
 * C[i, j] (+)= Σ_p A[i, p]·B[p, j] for i < m, j < n; C is row-major from `cOffset` with row stride `ldc`.
 * Without `accumulate` C is overwritten. NaN and Inf propagate as IEEE arithmetic says (zeros are never
 * skipped, so 0·NaN still poisons its row).
 */
export function gemm(
  m: number,
  n: number,
  k: number,
  a: Operand,
  b: Operand,
  c: Float32Array,
  cOffset: number,
  ldc: number,
  accumulate: boolean,
): void {
  if (m === 0 || n === 0) return;
  if (!accumulate) for (let i = 0; i < m; i++) c.fill(0, cOffset + i * ldc, cOffset + i * ldc + n);
  if (k === 0) return;
  if (m === 1) gemvRow(n, k, a, b, c, cOffset);
  else if (n === 1) gemvColumn(m, k, a, b, c, cOffset, ldc);
  else if (m * n * k <= SMALL) naive(m, n, k, a, b, c, cOffset, ldc);
  else blocked(m, n, k, a, b, c, cOffset, ldc);
}

/** c[j] += Σ_p a[0, p]·B[p, j]. */
function gemvRow(n: number, k: number, a: Operand, b: Operand, c: Float32Array, cOffset: number): void {
  const { data: av, offset: ao, colStride: as } = a;
  const { data: bv, offset: bo, rowStride: brs, colStride: bcs } = b;
  if (bcs === 1) {
    // B's rows are contiguous: stream them, accumulating one output row in float64.
    const acc = new Float64Array(n);
    for (let p = 0; p < k; p++) {
      const x = av[ao + p * as]!;
      const row = bo + p * brs;
      for (let j = 0; j < n; j++) acc[j]! += x * bv[row + j]!;
    }
    for (let j = 0; j < n; j++) c[cOffset + j]! += acc[j]!;
    return;
  }
  // Bᵀ stored (a Linear weight): one contiguous dot product per output.
  if (as === 1 && brs === 1) for (let j = 0; j < n; j++) c[cOffset + j]! += dotContiguous(k, av, ao, bv, bo + j * bcs);
  else for (let j = 0; j < n; j++) c[cOffset + j]! += dot(k, av, ao, as, bv, bo + j * bcs, brs);
}

/** c[i] += Σ_p A[i, p]·b[p, 0]. */
function gemvColumn(m: number, k: number, a: Operand, b: Operand, c: Float32Array, cOffset: number, ldc: number): void {
  const { data: av, offset: ao, rowStride: ars, colStride: acs } = a;
  const { data: bv, offset: bo, rowStride: brs } = b;
  if (acs !== 1 && ars === 1) {
    // A is stored transposed (its columns are contiguous): stream the columns.
    const acc = new Float64Array(m);
    for (let p = 0; p < k; p++) {
      const x = bv[bo + p * brs]!;
      const col = ao + p * acs;
      for (let i = 0; i < m; i++) acc[i]! += av[col + i]! * x;
    }
    for (let i = 0; i < m; i++) c[cOffset + i * ldc]! += acc[i]!;
    return;
  }
  if (acs === 1 && brs === 1) for (let i = 0; i < m; i++) c[cOffset + i * ldc]! += dotContiguous(k, av, ao + i * ars, bv, bo);
  else for (let i = 0; i < m; i++) c[cOffset + i * ldc]! += dot(k, av, ao + i * ars, acs, bv, bo, brs);
}

/**
 * Σ_p x[xo + p]·y[yo + p]. The plain loop is the fastest form V8 compiles here (measured: ~1.8× the
 * strided form, and manual unrolling into several sums does not help); GEMV is bound by reading B anyway.
 */
function dotContiguous(k: number, x: Float32Array, xo: number, y: Float32Array, yo: number): number {
  let s = 0;
  for (let p = 0; p < k; p++) s += x[xo + p]! * y[yo + p]!;
  return s;
}

/** Σ_p x[xo + p·xs]·y[yo + p·ys] with four partial sums (independent add chains pipeline better). */
function dot(k: number, x: Float32Array, xo: number, xs: number, y: Float32Array, yo: number, ys: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let p = 0;
  for (; p + 4 <= k; p += 4) {
    s0 += x[xo + p * xs]! * y[yo + p * ys]!;
    s1 += x[xo + (p + 1) * xs]! * y[yo + (p + 1) * ys]!;
    s2 += x[xo + (p + 2) * xs]! * y[yo + (p + 2) * ys]!;
    s3 += x[xo + (p + 3) * xs]! * y[yo + (p + 3) * ys]!;
  }
  for (; p < k; p++) s0 += x[xo + p * xs]! * y[yo + p * ys]!;
  return s0 + s1 + (s2 + s3);
}

function naive(m: number, n: number, k: number, a: Operand, b: Operand, c: Float32Array, cOffset: number, ldc: number): void {
  const { data: av, offset: ao, rowStride: ars, colStride: acs } = a;
  const { data: bv, offset: bo, rowStride: brs, colStride: bcs } = b;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) c[cOffset + i * ldc + j]! += dot(k, av, ao + i * ars, acs, bv, bo + j * bcs, brs);
  }
}

function blocked(m: number, n: number, k: number, a: Operand, b: Operand, c: Float32Array, cOffset: number, ldc: number): void {
  const { values: buf, micro } = packingHeap();
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    const ncPad = roundUp(nc, NR);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      packB(b, pc, kc, jc, nc, buf, B_AT);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        packA(a, ic, mc, pc, kc, buf);
        micro.macro(roundUp(mc, MR), ncPad, kc, 0, B_AT * 8, C_AT * 8, ncPad * 8);
        addBlock(buf, ncPad, c, cOffset + ic * ldc + jc, ldc, mc, nc);
      }
    }
  }
}

/** C[0..mc, 0..nc] += the block the macro-kernel left in the heap (its zero-padded edges are dropped). */
function addBlock(buf: Float64Array, ldb: number, c: Float32Array, ci: number, ldc: number, mc: number, nc: number): void {
  for (let i = 0; i < mc; i++) {
    const src = C_AT + i * ldb;
    const dst = ci + i * ldc;
    for (let j = 0; j < nc; j++) c[dst + j]! += buf[src + j]!;
  }
}

function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

/**
 * A[i0 .. i0+mc, p0 .. p0+kc] → panels of MR rows, k-major inside a panel, zero-padded to MR rows. The loop
 * order follows the source: along k when A's rows are contiguous, along i when A is stored transposed, so
 * the reads stream instead of striding through memory a cache line (and a page) per element.
 */
function packA(a: Operand, i0: number, mc: number, p0: number, kc: number, buf: Float64Array): void {
  const { data, offset, rowStride, colStride } = a;
  for (let ir = 0; ir < mc; ir += MR) {
    const panel = ir * kc;
    const rows = Math.min(MR, mc - ir);
    const src = offset + (i0 + ir) * rowStride + p0 * colStride;
    if (colStride === 1 || rows < MR) {
      for (let i = 0; i < MR; i++) {
        if (i >= rows) {
          for (let p = 0; p < kc; p++) buf[panel + p * MR + i] = 0;
          continue;
        }
        const row = src + i * rowStride;
        for (let p = 0; p < kc; p++) buf[panel + p * MR + i] = data[row + p * colStride]!;
      }
    } else {
      for (let p = 0, q = panel; p < kc; p++, q += MR) {
        const col = src + p * colStride;
        buf[q] = data[col]!;
        buf[q + 1] = data[col + rowStride]!;
        buf[q + 2] = data[col + 2 * rowStride]!;
        buf[q + 3] = data[col + 3 * rowStride]!;
      }
    }
  }
}

/** B[p0 .. p0+kc, j0 .. j0+nc] → panels of NR columns, k-major inside a panel, zero-padded to NR columns. */
function packB(b: Operand, p0: number, kc: number, j0: number, nc: number, buf: Float64Array, at: number): void {
  const { data, offset, rowStride, colStride } = b;
  for (let jr = 0; jr < nc; jr += NR) {
    const panel = at + jr * kc;
    const cols = Math.min(NR, nc - jr);
    const src = offset + p0 * rowStride + (j0 + jr) * colStride;
    if (colStride === 1 && cols === NR) {
      for (let p = 0, q = panel; p < kc; p++, q += NR) {
        const row = src + p * rowStride;
        buf[q] = data[row]!;
        buf[q + 1] = data[row + 1]!;
      }
      continue;
    }
    for (let j = 0; j < NR; j++) {
      if (j >= cols) {
        for (let p = 0; p < kc; p++) buf[panel + p * NR + j] = 0;
        continue;
      }
      const col = src + j * colStride;
      for (let p = 0; p < kc; p++) buf[panel + p * NR + j] = data[col + p * rowStride]!;
    }
  }
}
