import { describe, expect, it } from 'vitest';
import { gemm, type Operand } from '../src/kernels/gemm.js';
import { batchOffsets } from '../src/kernels/matmul.js';
import { seeded } from './helpers.js';

/** Float64 reference over the same strided operands. */
function reference(m: number, n: number, k: number, a: Operand, b: Operand): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++)
        s += a.data[a.offset + i * a.rowStride + p * a.colStride]! * b.data[b.offset + p * b.rowStride + j * b.colStride]!;
      out[i * n + j] = s;
    }
  }
  return out;
}

function operand(rows: number, cols: number, transposed: boolean, seed: number, offset = 0): Operand {
  const data = new Float32Array(offset + rows * cols);
  data.set(seeded(rows * cols, seed), offset);
  return transposed ? { data, offset, rowStride: 1, colStride: rows } : { data, offset, rowStride: cols, colStride: 1 };
}

function maxError(c: Float32Array, ref: Float64Array, ldc: number, n: number, cOffset = 0): number {
  let worst = 0;
  for (let i = 0; i < ref.length / n; i++)
    for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(c[cOffset + i * ldc + j]! - ref[i * n + j]!));
  return worst;
}

describe('gemm paths', () => {
  // Sizes chosen to cross every block edge: MR = 4, NR = 2, KC = 256, MC = 128, NC = 1024, and the GEMV/naive paths.
  const cases: [number, number, number][] = [
    [1, 37, 300], // GEMV over rows
    [29, 1, 300], // GEMV over columns
    [5, 7, 3], // naive
    [130, 9, 261], // blocked: two M blocks, two K blocks, edge tiles
    [6, 1030, 40], // two N blocks
    [67, 65, 513], // three K blocks, odd edges both ways
  ];
  for (const [m, n, k] of cases) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        it(`${m}×${k} · ${k}×${n}${ta ? ' (Aᵀ)' : ''}${tb ? ' (Bᵀ)' : ''} matches a float64 reference`, () => {
          const a = operand(m, k, ta, 3 + m, 5);
          const b = operand(k, n, tb, 7 + n, 2);
          const c = new Float32Array(m * n + 3).fill(NaN);
          gemm(m, n, k, a, b, c, 3, n, false);
          // Every output is one float32 rounding of a float64 sum per K block: error ≪ 1e-5 of √K.
          expect(maxError(c, reference(m, n, k, a, b), n, n, 3)).toBeLessThan(1e-5);
        });
      }
    }
  }

  it('accumulates into C when asked, inside a wider row stride', () => {
    const [m, n, k] = [9, 11, 300];
    const a = operand(m, k, false, 1);
    const b = operand(k, n, false, 2);
    const ldc = 20;
    const c = new Float32Array(m * ldc).fill(1);
    gemm(m, n, k, a, b, c, 0, ldc, true);
    const ref = reference(m, n, k, a, b).map((v) => v + 1);
    expect(maxError(c, ref, ldc, n)).toBeLessThan(1e-5);
    expect(c[n]).toBe(1); // outside the m×n block: untouched
  });

  it('propagates NaN through zeros on every path (zeros are never skipped)', () => {
    for (const [m, n, k] of [
      [1, 5, 8],
      [5, 1, 8],
      [3, 3, 3],
      [40, 40, 40],
    ] as const) {
      const a = { data: new Float32Array(m * k), offset: 0, rowStride: k, colStride: 1 };
      const bData = new Float32Array(k * n);
      bData[0] = NaN; // row 0 of B meets column 0 of A, which is all zeros
      const c = new Float32Array(m * n);
      gemm(m, n, k, a, { data: bData, offset: 0, rowStride: n, colStride: 1 }, c, 0, n, false);
      expect(c[0]).toBeNaN();
      if (n > 1) expect(c[1]).toBe(0);
    }
  });

  it('K = 0 writes zeros', () => {
    const c = new Float32Array(4).fill(5);
    gemm(2, 2, 0, operand(2, 0, false, 1), operand(0, 2, false, 1), c, 0, 2, false);
    expect(Array.from(c)).toEqual([0, 0, 0, 0]);
  });
});

describe('batch broadcasting', () => {
  it("maps each output batch index to each operand's matrix", () => {
    expect(Array.from(batchOffsets([2, 3], [2, 1]))).toEqual([0, 0, 0, 1, 1, 1]);
    expect(Array.from(batchOffsets([2, 3], [3]))).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(batchOffsets([], []))).toEqual([0]);
  });
});
