/**
 * Single-precision GEMM on typed arrays: C (+)= A·B with A m×k and B k×n given by offset and row/column
 * strides (so every transpose is just a choice of strides and never a copy).
 *
 * Large products follow the Goto/BLIS scheme: B is packed per KC×NC block and A per MC×KC block into
 * contiguous panels, and a 4×4 register-blocked micro-kernel runs over the panels. The panels are
 * float64: JavaScript multiplies in float64 anyway, so converting once while packing saves a conversion
 * per use in the micro-kernel, and products accumulate in float64 (one float32 rounding per K block).
 * M = 1 and N = 1 take streaming GEMV paths; tiny products a plain triple loop.
 */

const MR = 4;
const NR = 4;
/** K block: a 4×KC float64 panel of A and of B (8 KiB each) stay in L1 during the micro-kernel. */
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

let packed = new Float64Array(0);
const edgeTile = new Float64Array(MR * NR);

function packSpace(size: number): Float64Array {
  if (packed.length < size) packed = new Float64Array(size);
  return packed;
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
  for (let j = 0; j < n; j++) c[cOffset + j]! += dot(k, av, ao, as, bv, bo + j * bcs, brs);
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
  for (let i = 0; i < m; i++) c[cOffset + i * ldc]! += dot(k, av, ao + i * ars, acs, bv, bo, brs);
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
  const kcMax = Math.min(k, KC);
  const aSize = roundUp(Math.min(m, MC), MR) * kcMax;
  const buf = packSpace(aSize + roundUp(Math.min(n, NC), NR) * kcMax);
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      packB(b, pc, kc, jc, nc, buf, aSize);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        packA(a, ic, mc, pc, kc, buf);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = Math.min(NR, nc - jr);
          const pb = aSize + jr * kc;
          for (let ir = 0; ir < mc; ir += MR) {
            microKernel(kc, buf, ir * kc, pb, c, cOffset + (ic + ir) * ldc + jc + jr, ldc, Math.min(MR, mc - ir), nr);
          }
        }
      }
    }
  }
}

/** A[i0 .. i0+mc, p0 .. p0+kc] → panels of MR rows, k-major inside a panel, zero-padded to MR rows. */
function packA(a: Operand, i0: number, mc: number, p0: number, kc: number, buf: Float64Array): void {
  const { data, offset, rowStride, colStride } = a;
  for (let ir = 0; ir < mc; ir += MR) {
    const panel = ir * kc;
    for (let i = 0; i < MR; i++) {
      if (ir + i >= mc) {
        for (let p = 0; p < kc; p++) buf[panel + p * MR + i] = 0;
        continue;
      }
      const src = offset + (i0 + ir + i) * rowStride + p0 * colStride;
      for (let p = 0; p < kc; p++) buf[panel + p * MR + i] = data[src + p * colStride]!;
    }
  }
}

/** B[p0 .. p0+kc, j0 .. j0+nc] → panels of NR columns, k-major inside a panel, zero-padded to NR columns. */
function packB(b: Operand, p0: number, kc: number, j0: number, nc: number, buf: Float64Array, at: number): void {
  const { data, offset, rowStride, colStride } = b;
  for (let jr = 0; jr < nc; jr += NR) {
    const panel = at + jr * kc;
    for (let j = 0; j < NR; j++) {
      if (jr + j >= nc) {
        for (let p = 0; p < kc; p++) buf[panel + p * NR + j] = 0;
        continue;
      }
      const src = offset + p0 * rowStride + (j0 + jr + j) * colStride;
      for (let p = 0; p < kc; p++) buf[panel + p * NR + j] = data[src + p * rowStride]!;
    }
  }
}

/**
 * The 4×4 register block: 16 accumulators live in registers across the whole K block while one
 * 4-vector of A and one of B are loaded per step. Edge tiles (mr or nr < 4) compute on the zero
 * padding and store only their valid part.
 */
function microKernel(kc: number, p: Float64Array, pa: number, pb: number, c: Float32Array, ci: number, ldc: number, mr: number, nr: number): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const end = pa + kc * MR;
  for (; pa < end; pa = (pa + MR) | 0, pb = (pb + NR) | 0) {
    const a0 = p[pa]!, a1 = p[(pa + 1) | 0]!, a2 = p[(pa + 2) | 0]!, a3 = p[(pa + 3) | 0]!;
    const b0 = p[pb]!, b1 = p[(pb + 1) | 0]!, b2 = p[(pb + 2) | 0]!, b3 = p[(pb + 3) | 0]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  if (mr === MR && nr === NR) {
    let o = ci;
    c[o]! += c00; c[o + 1]! += c01; c[o + 2]! += c02; c[o + 3]! += c03;
    o += ldc;
    c[o]! += c10; c[o + 1]! += c11; c[o + 2]! += c12; c[o + 3]! += c13;
    o += ldc;
    c[o]! += c20; c[o + 1]! += c21; c[o + 2]! += c22; c[o + 3]! += c23;
    o += ldc;
    c[o]! += c30; c[o + 1]! += c31; c[o + 2]! += c32; c[o + 3]! += c33;
    return;
  }
  const t = edgeTile;
  t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03;
  t[4] = c10; t[5] = c11; t[6] = c12; t[7] = c13;
  t[8] = c20; t[9] = c21; t[10] = c22; t[11] = c23;
  t[12] = c30; t[13] = c31; t[14] = c32; t[15] = c33;
  for (let i = 0; i < mr; i++) for (let j = 0; j < nr; j++) c[ci + i * ldc + j]! += t[i * NR + j]!;
}

function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}
