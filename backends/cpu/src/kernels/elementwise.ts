/**
 * Elementwise kernels. Each loop is written once per op with the op chosen outside the loop, so the hot
 * loop has no call and no branch on the op (a function-per-op table would make the loop megamorphic).
 */
import { type AnyTypedArray, type BinaryOp, MissingKernelError, type UnaryOp } from '@dorajs/core';
import type { BroadcastPlan } from './broadcast.js';
import { erf, gelu, geluTanh, sigmoid, silu } from './scalar-math.js';

type Numeric = Float32Array | Int32Array;

/**
 * out = a (op) b over a broadcast plan. `out` decides the result type: a Float32Array for float inputs
 * and for comparisons, an Int32Array for int32 arithmetic (the store truncates toward zero and wraps,
 * as C does; integer division by zero gives 0).
 */
export function binaryInto(op: BinaryOp, a: Numeric, b: Numeric, out: Numeric, plan: BroadcastPlan): void {
  const { rows, rowLength: n, innerStrides, rowOffsets } = plan;
  const sa = innerStrides[0]!;
  const sb = innerStrides[1]!;
  const offA = rowOffsets[0]!;
  const offB = rowOffsets[1]!;
  const intMul = op === 'mul' && out instanceof Int32Array;
  for (let r = 0; r < rows; r++) {
    let ia = offA[r]!;
    let ib = offB[r]!;
    const o = r * n;
    const end = o + n;
    switch (op) {
      case 'add':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! + b[ib]!;
        break;
      case 'sub':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! - b[ib]!;
        break;
      case 'mul':
        if (intMul) for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = Math.imul(a[ia]!, b[ib]!);
        else for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! * b[ib]!;
        break;
      case 'div':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! / b[ib]!;
        break;
      case 'max':
        // Math.max propagates NaN, as torch.maximum does.
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = Math.max(a[ia]!, b[ib]!);
        break;
      case 'min':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = Math.min(a[ia]!, b[ib]!);
        break;
      case 'pow':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = Math.pow(a[ia]!, b[ib]!);
        break;
      case 'greater':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! > b[ib]! ? 1 : 0;
        break;
      case 'equal':
        for (let i = o; i < end; i++, ia += sa, ib += sb) out[i] = a[ia]! === b[ib]! ? 1 : 0;
        break;
      default:
        throw unknownOp(op);
    }
  }
}

/** Unary ops that keep int32 as int32; every other op needs float32 (core widens narrow types first). */
export const INT_UNARY: ReadonlySet<UnaryOp> = new Set<UnaryOp>(['neg', 'abs', 'square', 'relu', 'step', 'sign', 'isFinite']);

export function unaryInto(op: UnaryOp, x: Numeric, out: Numeric): void {
  const n = x.length;
  switch (op) {
    case 'neg':
      for (let i = 0; i < n; i++) out[i] = -x[i]!;
      break;
    case 'abs':
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!);
      break;
    case 'exp':
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!);
      break;
    case 'log':
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!);
      break;
    case 'sqrt':
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!);
      break;
    case 'rsqrt':
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]!);
      break;
    case 'reciprocal':
      for (let i = 0; i < n; i++) out[i] = 1 / x[i]!;
      break;
    case 'square':
      if (out instanceof Int32Array) for (let i = 0; i < n; i++) out[i] = Math.imul(x[i]!, x[i]!);
      else for (let i = 0; i < n; i++) out[i] = x[i]! * x[i]!;
      break;
    case 'relu':
      // `v > 0 ? v : 0` would turn NaN into 0; torch.relu keeps NaN.
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v > 0 || v !== v ? v : 0;
      }
      break;
    case 'step':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v > 0 ? 1 : v !== v ? v : 0;
      }
      break;
    case 'sign':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v > 0 ? 1 : v < 0 ? -1 : v;
      }
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) out[i] = sigmoid(x[i]!);
      break;
    case 'silu':
      for (let i = 0; i < n; i++) out[i] = silu(x[i]!);
      break;
    case 'gelu':
      for (let i = 0; i < n; i++) out[i] = gelu(x[i]!);
      break;
    case 'geluTanh':
      for (let i = 0; i < n; i++) out[i] = geluTanh(x[i]!);
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!);
      break;
    case 'erf':
      for (let i = 0; i < n; i++) out[i] = erf(x[i]!);
      break;
    case 'sin':
      for (let i = 0; i < n; i++) out[i] = Math.sin(x[i]!);
      break;
    case 'cos':
      for (let i = 0; i < n; i++) out[i] = Math.cos(x[i]!);
      break;
    case 'isFinite':
      for (let i = 0; i < n; i++) out[i] = Number.isFinite(x[i]!) ? 1 : 0;
      break;
    default:
      throw unknownOp(op);
  }
}

/** `never` makes a new op in the contract a compile error here; the throw covers callers outside TypeScript. */
function unknownOp(op: never): MissingKernelError {
  return new MissingKernelError(String(op), 'cpu');
}

export function affineInto(x: Numeric, scale: number, offset: number, out: Numeric): void {
  const n = x.length;
  for (let i = 0; i < n; i++) out[i] = x[i]! * scale + offset;
}

/** out = cond ≠ 0 ? a : b (NaN counts as true, as bool(NaN) does in PyTorch). */
export function whereInto(cond: AnyTypedArray, a: Numeric, b: Numeric, out: Numeric, plan: BroadcastPlan): void {
  const { rows, rowLength: n, innerStrides, rowOffsets } = plan;
  const [sc, sa, sb] = innerStrides as [number, number, number];
  for (let r = 0; r < rows; r++) {
    let ic = rowOffsets[0]![r]!;
    let ia = rowOffsets[1]![r]!;
    let ib = rowOffsets[2]![r]!;
    for (let i = r * n, end = i + n; i < end; i++, ic += sc, ia += sa, ib += sb) out[i] = cond[ic] !== 0 ? a[ia]! : b[ib]!;
  }
}
