/**
 * Embedding-style row gather and its transpose. Indices are checked: an index outside the table is a
 * typed error here rather than silently reading garbage.
 */
import { ConfigError } from '@dorajs/core';

type Numeric = Float32Array | Int32Array;

export function checkIndex(op: string, index: number, position: number, rows: number): void {
  if (!(index >= 0 && index < rows)) {
    throw new ConfigError(`cpu ${op}: index ${index} at position ${position} is outside a table of ${rows} rows`);
  }
}

/** out[i, :] = table[indices[i], :]. */
export function gatherInto(table: Numeric, rows: number, cols: number, indices: Int32Array, out: Numeric): void {
  if (cols <= 8) {
    // Narrow rows (a code-table lookup: core resolves double-quantized absmax and dequantizes through gathers of
    // 1–2 columns): element copies, not a subarray + set per row (~60 ns each).
    for (let i = 0; i < indices.length; i++) {
      const row = indices[i]!;
      checkIndex('gather', row, i, rows);
      for (let j = 0; j < cols; j++) out[i * cols + j] = table[row * cols + j]!;
    }
    return;
  }
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i]!;
    checkIndex('gather', row, i, rows);
    out.set(table.subarray(row * cols, row * cols + cols), i * cols);
  }
}

/** out[indices[i], :] += updates[i, :], in index order (so repeated indices sum deterministically). */
export function scatterAddInto(indices: Int32Array, updates: Float32Array, cols: number, numRows: number, out: Float32Array): void {
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i]!;
    checkIndex('scatterAdd', row, i, numRows);
    const dst = row * cols;
    const src = i * cols;
    for (let j = 0; j < cols; j++) out[dst + j]! += updates[src + j]!;
  }
}
