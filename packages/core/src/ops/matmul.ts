import { tidy } from '../tensor/scope.js';
import type { MatMulOptions } from '../backend/backend.js';
import { ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { broadcastShapes, shapeStr } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, sumTo } from './elementwise.js';
import { reshape } from './layout.js';
import { isNarrow, narrowLinear, narrowMatmul, type Weight } from './narrow.js';
import { backendOf, requireFloat, savePair, wrap } from './util.js';

/**
 * Batched matrix product over the last two axes (leading axes broadcast), with optional transposes.
 * Rank-1 inputs are not promoted: use reshape.
 */
export function matmul(a: Tensor, b: Tensor, options: MatMulOptions = {}): Tensor {
  const be = backendOf('matmul', a, b);
  requireFloat('matmul', a);
  requireFloat('matmul', b);
  const ta = !!options.transposeA;
  const tb = !!options.transposeB;
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`matmul: needs rank ≥ 2, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  const [m, ka] = ta ? [a.shape[a.rank - 1]!, a.shape[a.rank - 2]!] : [a.shape[a.rank - 2]!, a.shape[a.rank - 1]!];
  const [kb, n] = tb ? [b.shape[b.rank - 1]!, b.shape[b.rank - 2]!] : [b.shape[b.rank - 2]!, b.shape[b.rank - 1]!];
  if (ka !== kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: ${shapeStr(a.shape)}${ta ? 'ᵀ' : ''} · ${shapeStr(b.shape)}${tb ? 'ᵀ' : ''} (${ka} vs ${kb})`,
    );
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  const shape = [...batch, m, n];
  return recordMatmul(wrap(be, be.matmul(a.info, b.info, { transposeA: ta, transposeB: tb }, shape), shape, 'float32'), a, b, options);
}

/** Attaches matmul's backward to `out` = a·b (with the transposes) computed by any kernel (fused ones too). */
export function recordMatmul(out: Tensor, a: Tensor, b: Tensor, options: MatMulOptions = {}): Tensor {
  const ta = !!options.transposeA;
  const tb = !!options.transposeB;
  // da needs b, db needs a: a frozen weight's input is not kept for a gradient nobody asks for.
  const [saved, read] = savePair(a, b, b.requiresGrad, a.requiresGrad);
  return record('matmul', out, [a, b], saved, (g, s) => {
    const [sa, sb] = read(s);
    return [
      a.requiresGrad
        ? sumTo(ta ? matmul(sb!, g, { transposeA: tb, transposeB: true }) : matmul(g, sb!, { transposeB: !tb }), a.shape)
        : null,
      b.requiresGrad
        ? sumTo(tb ? matmul(g, sa!, { transposeA: true, transposeB: ta }) : matmul(sa!, g, { transposeA: !ta }), b.shape)
        : null,
    ];
  });
}

/** x·Wᵀ (+ bias) for x [..., in] and W [out, in] — PyTorch's F.linear. A narrow W (bf16, f16, packed) uses the narrow kernels. */
export function linear(x: Tensor, weight: Weight, bias?: Tensor | null): Tensor {
  if (isNarrow(weight)) return narrowLinear(x, weight, bias);
  return tidy(() => {
    if (x.shape[x.rank - 1] !== weight.shape[1]) {
      throw new ShapeError(
        `linear: input ${shapeStr(x.shape)} does not fit weight ${shapeStr(weight.shape)} (in features ${weight.shape[1]})`,
      );
    }
    const y = matmulLastAxis(x, weight, true);
    return bias ? addBias(y, bias) : y;
  });
}

/**
 * x [..., k] · w (w [k, n], or [n, k] with transposeW) with the leading axes of x flattened into rows. A narrow
 * w (bf16, f16, packed) goes through the narrow kernels.
 */
export function matmulLastAxis(x: Tensor, w: Weight, transposeW: boolean): Tensor {
  return tidy(() => {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : reshapeRows(x);
    const y = isNarrow(w) ? narrowMatmul(x2, w, transposeW) : matmul(x2, w as Tensor, { transposeB: transposeW });
    return x.rank === 2 ? y : reshapeBack(y, [...lead, y.shape[1]!]);
  });
}

const reshapeRows = (x: Tensor) => reshape(x, [-1, x.shape[x.rank - 1]!]);
const reshapeBack = (y: Tensor, shape: number[]) => reshape(y, shape);
const addBias = (y: Tensor, bias: Tensor) => add(y, bias);
