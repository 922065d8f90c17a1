/** Shape arithmetic for kernel parameters. */
import { ShapeError } from '@dorajs/core';

/** Highest rank the generic kernels index (their uniform structs reserve this many slots per shape). */
export const MAX_RANK = 8;

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** Strides of `shape` seen through broadcasting to `outShape` (0 on broadcast axes), right-aligned. */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[], op: string): number[] {
  const strides = stridesOf(shape);
  const off = outShape.length - shape.length;
  if (off < 0) throw new ShapeError(`webgpu ${op}: input [${shape.join(', ')}] has more axes than output [${outShape.join(', ')}]`);
  return outShape.map((d, i) => {
    if (i < off) return 0;
    const sd = shape[i - off]!;
    if (sd === d) return sd === 1 ? 0 : strides[i - off]!;
    if (sd === 1) return 0;
    throw new ShapeError(`webgpu ${op}: [${shape.join(', ')}] does not broadcast to [${outShape.join(', ')}]`);
  });
}

export function assertRank(shape: readonly number[], op: string): void {
  if (shape.length > MAX_RANK) throw new ShapeError(`webgpu ${op}: rank ${shape.length} exceeds ${MAX_RANK} ([${shape.join(', ')}])`);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Pads `values` with `fill` to exactly `n` entries (uniform slots). */
export function padTo(values: readonly number[], n: number, fill = 0): number[] {
  const out = values.slice(0, n);
  while (out.length < n) out.push(fill);
  return out;
}

/** Workgroup grid for `count` workgroups: 2-D when over the 65535 per-dimension limit. */
export function grid(count: number, maxPerDim = 65535): [number, number] {
  if (count <= maxPerDim) return [count, 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}
