import { tidy } from '../tensor/scope.js';
import type { ReduceOp } from '../backend/backend.js';
import { DoraError, ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { normAxis, shapeStr } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, mulScalar } from './elementwise.js';
import { reshape } from './layout.js';
import { backendOf, requireFloat, wrap } from './util.js';

function normAxes(x: Tensor, axes: number | readonly number[] | undefined, op: string): number[] {
  if (axes === undefined) return x.shape.map((_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  const norm = [...new Set(list.map((a) => normAxis(a, x.rank, op)))].sort((a, b) => a - b);
  if (norm.length === 0) throw new ShapeError(`${op}: no axes given for ${shapeStr(x.shape)}`);
  return norm;
}

function rawReduce(op: ReduceOp, x: Tensor, axes: number[], keepDims: boolean): Tensor {
  return tidy(() => {
    const be = backendOf(op, x);
    requireFloat(op, x);
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const out = wrap(be, be.reduce(op, x.info, axes, kept), kept, x.dtype);
    return keepDims
      ? out
      : reshape(
          out,
          x.shape.filter((_, i) => !axes.includes(i)),
        );
  });
}

/** Broadcasts g (keep-dims shape) back to `shape` by adding zeros. */
function expandTo(g: Tensor, shape: readonly number[]): Tensor {
  const be = g.backend;
  const zeros = wrap(be, be.fill(shape, 0, g.dtype), shape, g.dtype);
  return add(zeros, g);
}

export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes(x, axes, 'sum');
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  return record('sum', rawReduce('sum', x, ax, keepDims), [x], [], (g) => [expandTo(reshape(g, kept), x.shape)]);
}

export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes(x, axes, 'mean');
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const n = ax.reduce((p, a) => p * x.shape[a]!, 1);
  return record('mean', rawReduce('mean', x, ax, keepDims), [x], [], (g) => [mulScalar(expandTo(reshape(g, kept), x.shape), 1 / n)]);
}

function notDifferentiable(op: string) {
  return () => {
    throw new DoraError(`${op} has no gradient here`);
  };
}

export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes(x, axes, 'max');
  return record('max', rawReduce('max', x, ax, keepDims), [x], [], notDifferentiable('max'));
}

export function min(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes(x, axes, 'min');
  return record('min', rawReduce('min', x, ax, keepDims), [x], [], notDifferentiable('min'));
}

/** Index of the maximum along the last axis (int32). */
export function argMax(x: Tensor): Tensor {
  const be = backendOf('argMax', x);
  const shape = x.shape.slice(0, -1);
  return wrap(be, be.argMax(x.info), shape, 'int32');
}
