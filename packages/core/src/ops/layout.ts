import { ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { normAxis, type Shape, shapeStr, sizeOf } from '../tensor/shape.js';
import { noGrad, tidy } from '../tensor/scope.js';
import { type Parameter, Tensor } from '../tensor/tensor.js';
import { backendOf, wrap } from './util.js';

/** A view with a new shape (no copy). One dimension may be -1. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  x.assertAlive();
  const s = [...shape];
  const unknown = s.indexOf(-1);
  if (unknown >= 0) {
    const known = sizeOf(s.filter((_, i) => i !== unknown));
    s[unknown] = known === 0 ? 0 : x.size / known;
  }
  if (sizeOf(s) !== x.size || s.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(`reshape: cannot view ${shapeStr(x.shape)} as ${shapeStr(shape)}`);
  }
  const out = new Tensor(x.storage.retain(), s);
  return record('reshape', out, [x], [], (g) => [reshape(g, x.shape)]);
}

export function flatten(x: Tensor, startAxis = 0): Tensor {
  const a = normAxis(startAxis, x.rank, 'flatten');
  return reshape(x, [...x.shape.slice(0, a), -1]);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = axis < 0 ? axis + x.rank + 1 : axis;
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}

export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const p = perm ?? x.shape.map((_, i) => x.rank - 1 - i);
  if (p.length !== x.rank || [...p].sort((a, b) => a - b).some((v, i) => v !== i)) {
    throw new ShapeError(`transpose: permutation [${p.join(', ')}] does not fit ${shapeStr(x.shape)}`);
  }
  const b = backendOf('transpose', x);
  const shape = p.map((i) => x.shape[i]!);
  // Moving only axes of size 1 keeps every value where it is (e.g. splitting heads at one token): a view.
  if (keepsOrder(x.shape, p)) return reshape(x, shape);
  const out = wrap(b, b.transpose(x.info, p), shape, x.dtype);
  const inverse = new Array<number>(p.length);
  p.forEach((v, i) => (inverse[v] = i));
  return record('transpose', out, [x], [], (g) => [transpose(g, inverse)]);
}

/** Whether permuting `shape` by `perm` leaves the axes longer than 1 in their order (row-major data unchanged). */
function keepsOrder(shape: readonly number[], perm: readonly number[]): boolean {
  let last = -1;
  for (const axis of perm) {
    if (shape[axis] === 1) continue;
    if (axis < last) return false;
    last = axis;
  }
  return true;
}

/** Swaps the last two axes. */
export function transposeLast2(x: Tensor): Tensor {
  const p = x.shape.map((_, i) => i);
  p[x.rank - 1] = x.rank - 2;
  p[x.rank - 2] = x.rank - 1;
  return transpose(x, p);
}

export function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  if (begin.length !== x.rank || size.length !== x.rank) {
    throw new ShapeError(`slice: begin/size must have rank ${x.rank} for ${shapeStr(x.shape)}`);
  }
  const sz = size.map((s, i) => (s === -1 ? x.shape[i]! - begin[i]! : s));
  sz.forEach((s, i) => {
    if (begin[i]! < 0 || s < 0 || begin[i]! + s > x.shape[i]!) {
      throw new ShapeError(`slice: [${begin.join(', ')}] + [${sz.join(', ')}] out of range for ${shapeStr(x.shape)}`);
    }
  });
  const b = backendOf('slice', x);
  const out = wrap(b, b.slice(x.info, begin, sz), sz, x.dtype);
  return record('slice', out, [x], [], (g) => [padBack(g, x.shape, begin)]);
}

/** Slice along one axis: x[..., start:start+length, ...]. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis(axis, x.rank, 'narrow');
  const begin = x.shape.map((_, i) => (i === a ? start : 0));
  const size = x.shape.map((d, i) => (i === a ? length : d));
  return slice(x, begin, size);
}

/** Splits along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const a = normAxis(axis, x.rank, 'split');
  if (sizes.reduce((s, v) => s + v, 0) !== x.shape[a]) {
    throw new ShapeError(`split: sizes [${sizes.join(', ')}] do not add up to axis ${a} of ${shapeStr(x.shape)}`);
  }
  let start = 0;
  return sizes.map((len) => {
    const t = narrow(x, a, start, len);
    start += len;
    return t;
  });
}

/** Places g (a slice) back into zeros shaped like the original — the gradient of slice. */
function padBack(g: Tensor, shape: Shape, begin: readonly number[]): Tensor {
  const b = g.backend;
  let cur = g;
  for (let axis = 0; axis < shape.length; axis++) {
    const before = begin[axis]!;
    const after = shape[axis]! - before - cur.shape[axis]!;
    if (before === 0 && after === 0) continue;
    const parts: Tensor[] = [];
    const zshape = (n: number) => cur.shape.map((d, i) => (i === axis ? n : d));
    if (before > 0) parts.push(wrap(b, b.fill(zshape(before), 0, g.dtype), zshape(before), g.dtype));
    parts.push(cur);
    if (after > 0) parts.push(wrap(b, b.fill(zshape(after), 0, g.dtype), zshape(after), g.dtype));
    cur = concat(parts, axis);
  }
  return cur;
}

export function concat(tensors: readonly Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new ShapeError('concat: no tensors');
  const first = tensors[0]!;
  const a = normAxis(axis, first.rank, 'concat');
  for (const t of tensors) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i]) || t.dtype !== first.dtype) {
      throw new ShapeError(`concat: ${shapeStr(t.shape)} ${t.dtype} does not fit ${shapeStr(first.shape)} ${first.dtype} along axis ${a}`);
    }
  }
  const b = backendOf('concat', ...tensors);
  const shape = first.shape.map((d, i) => (i === a ? tensors.reduce((s, t) => s + t.shape[a]!, 0) : d));
  const out = wrap(
    b,
    b.concat(
      tensors.map((t) => t.info),
      a,
      shape,
    ),
    shape,
    first.dtype,
  );
  return record('concat', out, tensors, [], (g) =>
    split(
      g,
      tensors.map((t) => t.shape[a]!),
      a,
    ),
  );
}

/**
 * Overwrites `target`'s slab [offset, offset + value.shape[axis]) along `axis` with `value` — the one
 * mutating op, for buffers written step by step (a KV cache). In place through the backend's `writeSlice`
 * when it has one and no other tensor views the buffer; otherwise the buffer is rebuilt on the device from
 * slice + concat and swapped in (`Parameter.assign`). Never recorded for autograd.
 */
export function writeSlice(target: Parameter, value: Tensor, axis: number, offset: number): void {
  const a = normAxis(axis, target.rank, 'writeSlice');
  const n = value.shape[a] ?? 0;
  if (
    value.rank !== target.rank ||
    value.dtype !== target.dtype ||
    value.shape.some((d, i) => i !== a && d !== target.shape[i]) ||
    !Number.isInteger(offset) ||
    offset < 0 ||
    offset + n > target.shape[a]!
  ) {
    throw new ShapeError(
      `writeSlice: ${shapeStr(value.shape)} ${value.dtype} does not fit ${shapeStr(target.shape)} ${target.dtype} at offset ${offset} along axis ${a}`,
    );
  }
  const b = backendOf('writeSlice', target, value);
  if (n === 0) return;
  if (b.writeSlice && !target.storage.shared) {
    b.writeSlice(target.info, value.info, a, offset);
    target.version++;
    return;
  }
  const rebuilt = noGrad(() =>
    tidy(() => {
      const size = (k: number) => target.shape.map((d, i) => (i === a ? k : d));
      const begin = (k: number) => target.shape.map((_, i) => (i === a ? k : 0));
      const after = target.shape[a]! - offset - n;
      const parts = [
        ...(offset > 0 ? [slice(target, begin(0), size(offset))] : []),
        value,
        ...(after > 0 ? [slice(target, begin(offset + n), size(after))] : []),
      ];
      return parts.length === 1 ? reshape(value, target.shape) : concat(parts, a);
    }),
  );
  target.assign(rebuilt);
  rebuilt.dispose();
}
