/** Row (batch-axis) helpers for mixed-batch inference, built from differentiable core ops. */
import { ops, type Tensor, tensor } from '@dorajs/core';

/** x[indices] along axis 0. */
export function takeRows(x: Tensor, indices: readonly number[]): Tensor {
  const n = x.shape[0]!;
  if (indices.length === n && indices.every((v, i) => v === i)) return x;
  if (x.dtype === 'int32') {
    // Token ids: gather works on float tables; ids < 2^24 survive the round trip exactly.
    return ops.cast(takeRows(ops.cast(x, 'float32'), indices), 'int32');
  }
  const rest = x.shape.slice(1);
  const table = ops.reshape(x, [n, rest.reduce((a, b) => a * b, 1)]);
  const picked = ops.gather(table, tensor(Int32Array.from(indices), [indices.length], { backend: x.backend, dtype: 'int32' }));
  return ops.reshape(picked, [indices.length, ...rest]);
}

/**
 * Groups the batch rows by name (in order of first appearance), runs `fn` on each group's rows and puts
 * the results back in the original row order.
 */
export function perRowGroups(
  x: Tensor,
  names: readonly string[],
  fn: (name: string, rows: Tensor, indices: readonly number[]) => Tensor,
): Tensor {
  const groups = new Map<string, number[]>();
  names.forEach((name, i) => {
    const g = groups.get(name);
    if (g) g.push(i);
    else groups.set(name, [i]);
  });
  const order: number[] = [];
  const parts: Tensor[] = [];
  for (const [name, idx] of groups) {
    parts.push(fn(name, takeRows(x, idx), idx));
    order.push(...idx);
  }
  if (parts.length === 1) return parts[0]!;
  const stacked = ops.concat(parts, 0);
  const inverse = new Array<number>(order.length);
  order.forEach((row, pos) => (inverse[row] = pos));
  return takeRows(stacked, inverse);
}
