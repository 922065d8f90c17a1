/** Shared by matmul suites: seeded inputs and the naive peer every backend is compared with. */

/** Uniform values in [-1, 1) from a small LCG, so every run multiplies the same matrices. */
export function randomMatrix(rows: number, cols: number, seed: number): Float32Array {
  const out = new Float32Array(rows * cols);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

/** a [m, k] · b [k, n], i-k-j order (row-major friendly), float32 storage. */
export function naiveMatmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    const row = i * n;
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p]!;
      const bRow = p * n;
      for (let j = 0; j < n; j++) out[row + j]! += av * b[bRow + j]!;
    }
  }
  return out;
}
