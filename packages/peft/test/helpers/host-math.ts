/** Plain float64 reference math on row-major arrays, independent of core and the backends. */
export type Mat = { rows: number; cols: number; data: Float64Array };

export const mat = (data: ArrayLike<number>, rows: number, cols: number): Mat => ({ rows, cols, data: Float64Array.from(data) });

export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul ${a.rows}x${a.cols} · ${b.rows}x${b.cols}`);
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++)
    for (let k = 0; k < a.cols; k++) {
      const v = a.data[i * a.cols + k]!;
      for (let j = 0; j < b.cols; j++) out[i * b.cols + j]! += v * b.data[k * b.cols + j]!;
    }
  return { rows: a.rows, cols: b.cols, data: out };
}

export function transpose(a: Mat): Mat {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j]!;
  return { rows: a.cols, cols: a.rows, data: out };
}

export const add = (a: Mat, b: Mat, s = 1): Mat => ({ ...a, data: a.data.map((v, i) => v + s * b.data[i]!) });
export const scale = (a: Mat, s: number): Mat => ({ ...a, data: a.data.map((v) => v * s) });

/** Multiplies column j by f[j] (a feature-wise scale of [batch, out] results). */
export const scaleCols = (a: Mat, f: ArrayLike<number>): Mat => ({ ...a, data: a.data.map((v, i) => v * f[i % a.cols]!) });

/** Row norms of an [out, in] matrix. */
export function rowNorms(a: Mat): Float64Array {
  const out = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    for (let j = 0; j < a.cols; j++) s += a.data[i * a.cols + j]! ** 2;
    out[i] = Math.sqrt(s);
  }
  return out;
}
