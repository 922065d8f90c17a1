/**
 * The kernels that touch weights, over tensors split across buffers (see `split.ts`): each runs the
 * ordinary kernel once per part and joins the results, so every program stays single-buffer.
 * - upload / download / fill: part by part;
 * - elementwise (unary, affine, cast, binary, where): per row range of the output; an operand that is
 *   not split but spans those rows is sliced, a broadcast operand is passed whole;
 * - matmul: W split along its output features (x·Wᵀ, the Linear and tied-embedding layout) gives column
 *   blocks of y, joined by concat; split along the reduced axis (dY·W, the input gradient) gives partial
 *   products, summed; a split left operand gives row blocks of y (or partial products when transposed);
 * - gather: one dispatch per part writes the rows that part holds;
 * - weight norm: rows of W (and B) per part, joined; for transposed W (Embedding, Conv1D) the parts split
 *   the input dimension, and ‖·‖ = sqrt(Σ parts' ‖·‖²);
 * - slice and transpose: per part, joined.
 * A result that fits one buffer is joined into one; otherwise it stays split.
 */
import { allocFor, BYTES_PER_ELEMENT, type DType, type MatMulOptions, type TypedArrayFor, type WeightNormOptions } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import { SplitTensorError } from '../errors.js';
import { memoProgram, type Program } from '../runtime.js';
import { grid, sizeOf } from '../shapes.js';
import { describeSplit, isSplit, needsSplit, planParts, rowElements, rowParts, SplitTensor, type RowPart } from '../split.js';
import { bindInput, bindOutput, type BoundType, ELEMENTWISE_WORKGROUP as WG, linearMain, storageType } from '../wgsl/common.js';
import { binary, fill, unary, type TensorArg } from './elementwise.js';
import { concat, gatherRow, gatherTableType, gatherValue, slice, transpose } from './layout.js';

/** Frees a tensor the composite made (all its parts when split). */
export function releaseAny(ctx: KernelContext, t: GpuTensor): void {
  if (isSplit(t)) for (const p of t.parts) ctx.release(p);
  else ctx.release(t);
}

function refuse(op: string, what: string): never {
  throw new SplitTensorError(`webgpu ${op}: ${what}`);
}

// ---- storage

export function uploadSplit(ctx: KernelContext, values: TypedArrayFor<DType>, shape: readonly number[], dtype: DType): GpuTensor {
  const sizes = planParts(shape, ctx.partBytes, `webgpu upload [${shape.join(', ')}] ${dtype}`);
  const parts: GpuTensor[] = [];
  let offset = 0;
  for (const n of sizes) {
    const part = ctx.alloc(dtype, n);
    ctx.rt.write(part.buf, values.subarray(offset, offset + n));
    parts.push(part);
    offset += n;
  }
  return new SplitTensor(dtype, sizeOf(shape), parts);
}

export async function downloadSplit(ctx: KernelContext, t: SplitTensor): Promise<TypedArrayFor<DType>> {
  const out = allocFor(t.dtype, t.size);
  const bytes = new Uint8Array(out.buffer);
  const bpe = BYTES_PER_ELEMENT[t.dtype];
  let offset = 0;
  for (const p of t.parts) {
    const n = p.size * bpe;
    bytes.set(new Uint8Array(await ctx.rt.read(p.buf, n)), offset);
    offset += n;
  }
  return out as TypedArrayFor<DType>;
}

export function fillSplit(ctx: KernelContext, shape: readonly number[], value: number, dtype: DType): GpuTensor {
  const sizes = planParts(shape, ctx.partBytes, `webgpu fill [${shape.join(', ')}] ${dtype}`);
  return new SplitTensor(
    dtype,
    sizeOf(shape),
    sizes.map((n) => fill(ctx, [n], value, dtype)),
  );
}

// ---- row views and joins

/** Rows [r0, r1) of `a` along axis 0, as a single-buffer tensor (`temps` collects what was copied). */
function rowsOf(ctx: KernelContext, a: TensorArg, r0: number, r1: number, temps: GpuTensor[], op: string): TensorArg {
  const rest = a.shape.slice(1);
  const shape = [r1 - r0, ...rest];
  if (!isSplit(a.t)) {
    if (r0 === 0 && r1 === a.shape[0]) return a;
    const t = slice(ctx, a, [r0, ...rest.map(() => 0)], shape);
    temps.push(t);
    return { t, shape };
  }
  const pieces: TensorArg[] = [];
  for (const p of rowParts(a.t, a.shape, op)) {
    const lo = Math.max(r0, p.start);
    const hi = Math.min(r1, p.start + p.rows);
    if (lo >= hi) continue;
    const part = { t: p.t, shape: [p.rows, ...rest] };
    if (lo === p.start && hi === p.start + p.rows) {
      pieces.push(part);
    } else {
      const t = slice(ctx, part, [lo - p.start, ...rest.map(() => 0)], [hi - lo, ...rest]);
      temps.push(t);
      pieces.push({ t, shape: [hi - lo, ...rest] });
    }
  }
  if (pieces.length === 1) return { t: pieces[0]!.t, shape };
  const t = concat(ctx, pieces, 0, shape);
  temps.push(t);
  return { t, shape };
}

/** `length` entries of `a` along `axis` from `begin` (a copy; `a` must be in one buffer). */
function sliceAxis(
  ctx: KernelContext,
  a: TensorArg,
  axis: number,
  begin: number,
  length: number,
  temps: GpuTensor[],
  op: string,
): TensorArg {
  if (axis === 0) return rowsOf(ctx, a, begin, begin + length, temps, op);
  if (isSplit(a.t)) refuse(op, `${describeSplit(a.t, a.shape)} would be sliced along axis ${axis}`);
  const b = a.shape.map((_, i) => (i === axis ? begin : 0));
  const shape = a.shape.map((d, i) => (i === axis ? length : d));
  const t = slice(ctx, a, b, shape);
  temps.push(t);
  return { t, shape };
}

/** Joins consecutive row blocks of `outShape`: one buffer when it fits, else a split tensor of the blocks. */
export function joinRows(ctx: KernelContext, pieces: readonly TensorArg[], dtype: DType, outShape: readonly number[]): GpuTensor {
  if (pieces.length === 1) return pieces[0]!.t;
  const size = sizeOf(outShape);
  if (!needsSplit(dtype, size, ctx.partBytes)) {
    const out = concat(ctx, pieces, 0, outShape);
    for (const p of pieces) releaseAny(ctx, p.t);
    return out;
  }
  return new SplitTensor(
    dtype,
    size,
    pieces.flatMap((p) => (isSplit(p.t) ? p.t.parts : [p.t])),
  );
}

function free(ctx: KernelContext, temps: GpuTensor[]): void {
  for (const t of temps) releaseAny(ctx, t);
  temps.length = 0;
}

// ---- elementwise

/** A flat elementwise kernel, part by part. */
export function mapParts(ctx: KernelContext, a: SplitTensor, outDType: DType, kernel: (part: TensorArg) => GpuTensor): GpuTensor {
  const pieces = a.parts.map((p) => ({ t: kernel({ t: p, shape: [p.size] }), shape: [p.size] }));
  return joinRows(ctx, pieces, outDType, [a.size]);
}

/**
 * A broadcasting kernel over row ranges of `outShape`: the first split operand spanning the output's rows
 * sets the ranges; operands that span them are cut to each range, broadcast ones (fewer axes, or one row)
 * are passed whole.
 */
export function rowwise(
  ctx: KernelContext,
  inputs: readonly TensorArg[],
  outShape: readonly number[],
  outDType: DType,
  op: string,
  kernel: (views: TensorArg[], shape: number[]) => GpuTensor,
): GpuTensor {
  const rank = outShape.length;
  const spans = inputs.map((x) => rank > 0 && x.shape.length === rank && x.shape[0] === outShape[0] && outShape[0] !== 1);
  let ref: { parts: RowPart[] } | null = null;
  inputs.forEach((x, i) => {
    if (!isSplit(x.t)) return;
    if (!spans[i]) refuse(op, `${describeSplit(x.t, x.shape)} is broadcast to [${outShape.join(', ')}]`);
    ref ??= { parts: rowParts(x.t, x.shape, op) };
  });
  if (!ref) return kernel([...inputs], [...outShape]);
  // Each range also stays within one output part (an output row may be wider than the operand's).
  const perOut = planParts(outShape, ctx.partBytes, `webgpu ${op}`)[0]! / rowElements(outShape);
  const temps: GpuTensor[] = [];
  const pieces: TensorArg[] = [];
  for (const p of (ref as { parts: RowPart[] }).parts) {
    for (let r0 = p.start; r0 < p.start + p.rows; ) {
      const r1 = Math.min(p.start + p.rows, (Math.floor(r0 / perOut) + 1) * perOut);
      const views = inputs.map((x, i) => (spans[i] ? rowsOf(ctx, x, r0, r1, temps, op) : x));
      const shape = [r1 - r0, ...outShape.slice(1)];
      pieces.push({ t: kernel(views, shape), shape });
      free(ctx, temps);
      r0 = r1;
    }
  }
  return joinRows(ctx, pieces, outDType, outShape);
}

// ---- matmul

type MatmulKernel = (a: TensorArg, b: TensorArg, options: MatMulOptions, outShape: readonly number[]) => GpuTensor;

function addInto(ctx: KernelContext, acc: GpuTensor | null, t: GpuTensor, shape: readonly number[]): GpuTensor {
  if (!acc) return t;
  const sum = binary(ctx, 'add', { t: acc, shape }, { t, shape }, shape);
  ctx.release(acc);
  ctx.release(t);
  return sum;
}

/** `kernel` (the single-buffer matmul) over split operands; 2-D split operands only. */
export function matmulSplit(
  ctx: KernelContext,
  a: TensorArg,
  b: TensorArg,
  options: MatMulOptions,
  outShape: readonly number[],
  kernel: MatmulKernel,
): GpuTensor {
  const self = (x: TensorArg, y: TensorArg, shape: readonly number[]): GpuTensor =>
    isSplit(x.t) || isSplit(y.t) ? matmulSplit(ctx, x, y, options, shape, kernel) : kernel(x, y, options, shape);
  const transA = options.transposeA ?? false;
  const transB = options.transposeB ?? false;
  const rankOut = outShape.length;
  const temps: GpuTensor[] = [];
  if (isSplit(b.t)) {
    if (b.shape.length !== 2) refuse('matmul', `${describeSplit(b.t, b.shape)} has batch axes`);
    const parts = rowParts(b.t, b.shape, 'matmul');
    const inner = b.shape[1]!;
    if (transB) {
      // y[..., n-block] = x · W[n-block, :]ᵀ.
      const pieces = parts.map((p) => {
        const shape = [...outShape.slice(0, -1), p.rows];
        return { t: self(a, { t: p.t, shape: [p.rows, inner] }, shape), shape };
      });
      if (pieces.length === 1) return pieces[0]!.t;
      const out = concat(ctx, pieces, rankOut - 1, outShape);
      for (const p of pieces) ctx.release(p.t);
      return out;
    }
    // y = Σ x[..., k-block] · W[k-block, :].
    let acc: GpuTensor | null = null;
    for (const p of parts) {
      const ak = sliceAxis(ctx, a, a.shape.length - (transA ? 2 : 1), p.start, p.rows, temps, 'matmul');
      acc = addInto(ctx, acc, self(ak, { t: p.t, shape: [p.rows, inner] }, outShape), outShape);
      free(ctx, temps);
    }
    return acc!;
  }
  const at = a.t as SplitTensor;
  if (a.shape.length !== 2 || rankOut !== 2) refuse('matmul', `${describeSplit(at, a.shape)} meets batch axes`);
  const parts = rowParts(at, a.shape, 'matmul');
  const inner = a.shape[1]!;
  if (!transA) {
    const pieces = parts.map((p) => {
      const shape = [p.rows, outShape[1]!];
      return { t: self({ t: p.t, shape: [p.rows, inner] }, b, shape), shape };
    });
    return joinRows(ctx, pieces, 'float32', outShape);
  }
  let acc: GpuTensor | null = null;
  for (const p of parts) {
    const bk = sliceAxis(ctx, b, transB ? b.shape.length - 1 : b.shape.length - 2, p.start, p.rows, temps, 'matmul');
    acc = addInto(ctx, acc, self({ t: p.t, shape: [p.rows, inner] }, bk, outShape), outShape);
    free(ctx, temps);
  }
  return acc!;
}

// ---- weight norm

type NormKernel = (w: TensorArg, a: TensorArg, b: TensorArg, scale: number, options: WeightNormOptions) => GpuTensor;

export function weightNormSplit(
  ctx: KernelContext,
  w: TensorArg,
  a: TensorArg,
  b: TensorArg,
  scale: number,
  options: WeightNormOptions,
  kernel: NormKernel,
  /** W's shape as stored when it differs from its logical shape (packed 4-bit data: [rows, cols / 2]). */
  stored: readonly number[] = w.shape,
): GpuTensor {
  for (const [name, x] of [
    ['A', a],
    ['B', b],
  ] as const) {
    if (isSplit(x.t)) refuse('weightNorm', `adapter ${name}: ${describeSplit(x.t, x.shape)}`);
  }
  if (!isSplit(w.t)) return kernel(w, a, b, scale, options);
  const parts = rowParts(w.t, stored, 'weightNorm');
  const rest = w.shape.slice(1);
  const temps: GpuTensor[] = [];
  if (!options.transposeW) {
    // Rows of W are output features: each part's norms are a block of the result.
    const pieces = parts.map((p) => {
      const bp = rowsOf(ctx, b, p.start, p.start + p.rows, temps, 'weightNorm');
      const t = kernel({ t: p.t, shape: [p.rows, ...rest] }, a, bp, scale, options);
      free(ctx, temps);
      return { t, shape: [p.rows] };
    });
    return joinRows(ctx, pieces, 'float32', [w.shape[0]!]);
  }
  // W [in, out]: parts split the input dimension; ‖v‖² adds up over them.
  if (w.shape.length !== 2) refuse('weightNorm', `transposed ${describeSplit(w.t, w.shape)} must be 2-D`);
  const out = [w.shape[1]!];
  let acc: GpuTensor | null = null;
  for (const p of parts) {
    const ap = sliceAxis(ctx, a, 1, p.start, p.rows, temps, 'weightNorm');
    const n = kernel({ t: p.t, shape: [p.rows, ...rest] }, ap, b, scale, options);
    const sq = binary(ctx, 'mul', { t: n, shape: out }, { t: n, shape: out }, out);
    ctx.release(n);
    free(ctx, temps);
    acc = addInto(ctx, acc, sq, out);
  }
  const norm = unary(ctx, 'sqrt', { t: acc!, shape: out });
  ctx.release(acc!);
  return norm;
}

// ---- gather

function gatherPartProgram(bound: BoundType, idxType: DType): Program {
  const key = `gather-part:${bound}:${idxType}`;
  return memoProgram(key, () => ({
    key,
    name: 'gather (one part of a split table)',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['start', 'u32'],
        ['rows', 'u32'],
        ['cols', 'u32'],
        ['first', 'u32'],
        ['total', 'u32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: 2,
    source: () => `${bindOutput(1, 'out', 'u32')}
${bindInput(2, 'table', gatherTableType(bound))}
${bindInput(3, 'idx', storageType(idxType))}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
${gatherRow(idxType)}
  // Rows of other parts are left to their dispatch; the first dispatch zeroes rows no part holds.
  if (r < i32(P.start) || r >= i32(P.start + P.rows)) {
    if (P.first == 1u && (r < 0 || u32(r) >= P.total)) { out[index] = 0u; }
    return;
  }
  let row = u32(r) - P.start;
  out[index] = ${gatherValue(bound)};`,
)}`,
  }));
}

/** out[i, :] = table[indices[i], :] over a table split by rows; rows out of range read as zeros. */
export function gatherSplit(ctx: KernelContext, table: TensorArg, indices: TensorArg): GpuTensor {
  const t = table.t as SplitTensor;
  if (isSplit(indices.t)) refuse('gather', `indices: ${describeSplit(indices.t, indices.shape)}`);
  if (table.shape.length !== 2) refuse('gather', `${describeSplit(t, table.shape)} is not a 2-D table`);
  const [rows, cols] = table.shape as [number, number];
  const outDType: DType = t.dtype === 'int32' ? 'int32' : 'float32';
  const n = indices.t.size * cols;
  const out = ctx.alloc(outDType, n);
  const program = gatherPartProgram(ctx.bound(t.dtype), indices.t.dtype);
  rowParts(t, table.shape, 'gather').forEach((p, i) => {
    ctx.rt.dispatch({
      program,
      outputs: [out.buf],
      inputs: [p.t.buf, indices.t.buf],
      scalars: { n, start: p.start, rows: p.rows, cols, first: i === 0 ? 1 : 0, total: rows },
      workgroups: grid(Math.ceil(n / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
    });
  });
  return out;
}

// ---- layout

export function sliceSplit(ctx: KernelContext, a: TensorArg, begin: readonly number[], size: readonly number[]): GpuTensor {
  const t = a.t as SplitTensor;
  const rest = a.shape.slice(1);
  const pieces: TensorArg[] = [];
  for (const p of rowParts(t, a.shape, 'slice')) {
    const lo = Math.max(begin[0]!, p.start);
    const hi = Math.min(begin[0]! + size[0]!, p.start + p.rows);
    if (lo >= hi) continue;
    const shape = [hi - lo, ...size.slice(1)];
    pieces.push({ t: slice(ctx, { t: p.t, shape: [p.rows, ...rest] }, [lo - p.start, ...begin.slice(1)], shape), shape });
  }
  if (pieces.length === 0)
    return slice(ctx, { t: t.parts[0]!, shape: [t.parts[0]!.size / rowElements(a.shape), ...rest] }, [0, ...begin.slice(1)], size);
  return joinRows(ctx, pieces, t.dtype, size);
}

export function transposeSplit(ctx: KernelContext, a: TensorArg, perm: readonly number[]): GpuTensor {
  const t = a.t as SplitTensor;
  const rest = a.shape.slice(1);
  const outShape = perm.map((p) => a.shape[p]!);
  const parts = rowParts(t, a.shape, 'transpose');
  const axis = perm.indexOf(0);
  if (axis === 0) {
    // Axis 0 stays first: each part transposes into a row block of the result.
    const pieces = parts.map((p) => ({
      t: transpose(ctx, { t: p.t, shape: [p.rows, ...rest] }, perm),
      shape: [p.rows, ...outShape.slice(1)],
    }));
    return joinRows(ctx, pieces, t.dtype, outShape);
  }
  // The result would be split along another axis than its parts: not needed by any layer so far.
  return refuse('transpose', `${describeSplit(t, a.shape)} would move its split axis (perm [${perm.join(', ')}])`);
}
