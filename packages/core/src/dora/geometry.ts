/**
 * How each layer kind lays out W, A and B, and how that maps onto the [out, in] matrix DoRA normalises.
 *
 *   kind       W (stored)             A                  B                 "out" axis of the norm
 *   linear     [out, in]              [r, in]            [out, r]          rows of W
 *   conv1d     [in, out] (fanInFanOut)[r, in]            [out, r]          columns of W
 *   embedding  [num, dim]             [r, num]           [dim, r]          columns of W (one norm per dim)
 *   conv2d     [out, in/g, kh, kw]    [r, in, kh, kw]    [out, r/g, 1, 1]  over in·kh·kw per out channel
 *   convNd     [out, in/g, k…]        [r, in, k…]        [out, r/g, 1…]    over in·k… per out channel (nn.Conv1d/Conv3d)
 *
 * (`conv1d` is PyTorch's nn.Conv1d; transformers' GPT-2 Conv1D is a `linear` with fanInFanOut.)
 */
import { tidy } from '../tensor/scope.js';
import { ShapeError } from '../errors.js';
import { concat, narrow, reshape } from '../ops/layout.js';
import { shapeStr } from '../tensor/shape.js';
import { full, type Tensor } from '../tensor/tensor.js';
import type { Weight } from '../ops/narrow.js';
import { QuantizedWeight } from '../quant/quantized-weight.js';

export type DoraLayerKind = 'linear' | 'embedding' | 'conv1d' | 'conv2d' | 'conv3d';

/** Spatial axes of a convolution kind (1, 2, 3), 0 for Linear and Embedding. */
export function convDims(geo: LayerGeometry): 0 | 1 | 2 | 3 {
  return geo.kind === 'conv1d' ? 1 : geo.kind === 'conv2d' ? 2 : geo.kind === 'conv3d' ? 3 : 0;
}

export interface LayerGeometry {
  readonly kind: DoraLayerKind;
  /** W stored [in, out] (transformers Conv1D). Linear only. */
  readonly fanInFanOut?: boolean;
  /** Convolution groups of the base layer. */
  readonly groups?: number;
}

/** W, A and B as the [out, in], [r, in], [out, r] matrices whose B·A is the true weight delta. */
export interface MatrixView {
  /** Narrow (bf16, f16, packed) only for Linear/Conv1D and Embedding, whose W is already a matrix. */
  readonly w: Weight;
  readonly a: Tensor;
  readonly b: Tensor;
  /** W is [in, out] and must be read transposed. */
  readonly transposeW: boolean;
}

export function matrixView(geo: LayerGeometry, wIn: Weight, a: Tensor, b: Tensor): MatrixView {
  switch (geo.kind) {
    case 'linear':
      return { w: wIn, a, b, transposeW: !!geo.fanInFanOut };
    case 'embedding':
      return { w: wIn, a, b, transposeW: true };
    case 'conv1d':
    case 'conv2d':
    case 'conv3d': {
      if (wIn instanceof QuantizedWeight) throw new ShapeError(`${geo.kind} DoRA: a quantized weight is a Linear's only`);
      const w = wIn;
      const out = w.shape[0]!;
      const r = a.shape[0]!;
      const groups = geo.groups ?? 1;
      const rank = convDims(geo) + 2;
      if (w.rank !== rank || a.rank !== rank || b.rank !== rank || b.shape[0] !== out || b.shape[1]! * groups !== r) {
        throw new ShapeError(
          `${geo.kind} DoRA: W ${shapeStr(w.shape)}, A ${shapeStr(a.shape)}, B ${shapeStr(b.shape)} with groups ${groups} do not fit`,
        );
      }
      const a2 = reshape(a, [r, -1]);
      if (groups === 1) return { w: reshape(w, [out, -1]), a: a2, b: reshape(b, [out, r]), transposeW: false };
      return {
        w: blockDiagonal(reshape(w, [out, -1]), groups),
        a: a2,
        b: blockDiagonal(reshape(b, [out, r / groups]), groups),
        transposeW: false,
      };
    }
  }
}

/**
 * A grouped [out, k] matrix (each group of out/groups rows sees only its own k columns) expanded to the
 * dense [out, groups·k] matrix it stands for — so norms and deltas of grouped convs are the true ones.
 */
export function blockDiagonal(m: Tensor, groups: number): Tensor {
  return tidy(() => {
    const [out, k] = m.shape as [number, number];
    const rows = out / groups;
    const be = m.backend;
    const blocks: Tensor[] = [];
    for (let g = 0; g < groups; g++) {
      const parts: Tensor[] = [];
      if (g > 0) parts.push(full([rows, g * k], 0, { backend: be }));
      parts.push(rowsOf(m, g * rows, rows));
      if (g < groups - 1) parts.push(full([rows, (groups - 1 - g) * k], 0, { backend: be }));
      blocks.push(parts.length === 1 ? parts[0]! : concat(parts, 1));
    }
    return concat(blocks, 0);
  });
}

const rowsOf = (m: Tensor, start: number, n: number) => narrow(m, 0, start, n);
