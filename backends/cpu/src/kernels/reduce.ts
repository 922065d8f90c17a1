/**
 * Reductions, argMax and softmax. Sums accumulate in float64 (free in JavaScript, and the result is then
 * correctly rounded to float32 for any realistic length); max/min propagate NaN as torch.amax/amin do.
 */
import type { ReduceOp } from '@dorajs/core';

type Numeric = Float32Array | Int32Array;

/**
 * Reduces `x` of `shape` over `axes` (sorted, unique) into `out` (the kept-dims shape). Runs of adjacent
 * reduced axes are handled as one [outer, R, inner] pass each, innermost run first, so strided walks
 * only happen once per run.
 */
export function reduceInto(op: ReduceOp, x: Numeric, shape: readonly number[], axes: readonly number[], out: Numeric): void {
  // Collapse the shape into alternating kept / reduced blocks.
  const blocks: { size: number; reduced: boolean }[] = [];
  for (let d = 0; d < shape.length; d++) {
    const reduced = axes.includes(d);
    const last = blocks[blocks.length - 1];
    if (last && last.reduced === reduced) last.size *= shape[d]!;
    else blocks.push({ size: shape[d]!, reduced });
  }
  const accumulateOp: 'sum' | 'max' | 'min' = op === 'mean' ? 'sum' : op;
  let current: Float64Array | Numeric = x;
  let count = 1;
  for (let bi = blocks.length - 1; bi >= 0; bi--) {
    const block = blocks[bi]!;
    if (!block.reduced) continue;
    let outer = 1;
    for (let j = 0; j < bi; j++) outer *= blocks[j]!.size;
    let inner = 1;
    for (let j = bi + 1; j < blocks.length; j++) inner *= blocks[j]!.size;
    const next = new Float64Array(outer * inner);
    reduceBlock(accumulateOp, current, outer, block.size, inner, next);
    current = next;
    count *= block.size;
    block.size = 1;
  }
  const scale = op === 'mean' ? 1 / count : 1;
  for (let i = 0; i < out.length; i++) out[i] = op === 'mean' ? current[i]! * scale : current[i]!;
}

function reduceBlock(op: 'sum' | 'max' | 'min', x: ArrayLike<number>, outer: number, r: number, inner: number, out: Float64Array): void {
  for (let o = 0; o < outer; o++) {
    const base = o * r * inner;
    const dst = o * inner;
    if (op === 'sum' && inner === 1) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += x[base + k]!;
      out[dst] = acc;
    } else if (op === 'sum') {
      for (let k = 0; k < r; k++) {
        const src = base + k * inner;
        for (let i = 0; i < inner; i++) out[dst + i]! += x[src + i]!;
      }
    } else {
      // Start from the first slice, then take max/min; `v !== v` keeps a NaN once it appears.
      for (let i = 0; i < inner; i++) out[dst + i] = x[base + i]!;
      const isMax = op === 'max';
      for (let k = 1; k < r; k++) {
        const src = base + k * inner;
        for (let i = 0; i < inner; i++) {
          const v = x[src + i]!;
          const acc = out[dst + i]!;
          if (isMax ? v > acc || v !== v : v < acc || v !== v) out[dst + i] = v;
        }
      }
    }
  }
}

/** Index of the first maximum along the last axis; a NaN counts as the maximum (as torch.argmax). */
export function argMaxInto(x: Numeric, rowLength: number, out: Int32Array): void {
  for (let r = 0; r < out.length; r++) {
    const base = r * rowLength;
    let best = 0;
    let bestValue = x[base]!;
    if (bestValue === bestValue) {
      for (let i = 1; i < rowLength; i++) {
        const v = x[base + i]!;
        if (v !== v) {
          best = i;
          break;
        }
        if (v > bestValue) {
          bestValue = v;
          best = i;
        }
      }
    }
    out[r] = best;
  }
}

/**
 * Softmax (or log-softmax) along the last axis, shifted by the row maximum so large logits cannot
 * overflow. A row that is all −∞ (or holds NaN or +∞) yields NaN, as PyTorch's does.
 */
export function softmaxInto(x: Float32Array, rowLength: number, log: boolean, out: Float32Array): void {
  const rows = rowLength === 0 ? 0 : x.length / rowLength;
  const shifted = new Float64Array(rowLength); // x − max, kept in float64 so exp runs once per element
  for (let r = 0; r < rows; r++) {
    const base = r * rowLength;
    let max = -Infinity;
    for (let i = 0; i < rowLength; i++) {
      const v = x[base + i]!;
      if (v > max || v !== v) max = v;
    }
    // An all −∞ row has max −∞ and x − max = NaN below, which is the answer we want.
    let sum = 0;
    if (log) {
      for (let i = 0; i < rowLength; i++) sum += Math.exp((shifted[i] = x[base + i]! - max));
      const logSum = Math.log(sum);
      for (let i = 0; i < rowLength; i++) out[base + i] = shifted[i]! - logSum;
    } else {
      for (let i = 0; i < rowLength; i++) sum += shifted[i] = Math.exp(x[base + i]! - max);
      const inv = 1 / sum;
      for (let i = 0; i < rowLength; i++) out[base + i] = shifted[i]! * inv;
    }
  }
}
