/**
 * The optional fused kernels with their composite defaults. A backend that implements `weightNorm` or
 * `doraCompose` is used directly; otherwise the same numbers come from primitive kernels.
 */
import type { WeightNormOptions } from '../backend/backend.js';
import { ShapeError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { isGradEnabled, noGrad, tidy } from '../tensor/scope.js';
import { shapeStr } from '../tensor/shape.js';
import { full, type Tensor } from '../tensor/tensor.js';
import { add, mul, mulScalar, sqrt, sumTo } from './elementwise.js';
import { reshape, transpose } from './layout.js';
import { matmul } from './matmul.js';
import { sum } from './reduce.js';
import { QuantizedWeight } from '../quant/quantized-weight.js';
import { assertLive, isNarrow, type Weight, weightInfo, widen } from './narrow.js';
import { backendOf, wrap } from './util.js';

/**
 * ‖W + scale·B·A‖ per output feature → [out]. Never differentiable: DoRA treats the norm as a constant
 * (paper §4.3). W [out, in] (or [in, out] with transposeW), A [r, in], B [out, r]. W may be narrow
 * (bfloat16, float16 or a QuantizedWeight): its exact dequantized values are what the norm is taken of.
 */
export function weightNorm(w: Weight, a: Tensor, b: Tensor, scale: number, options: WeightNormOptions = {}): Tensor {
  if (isNarrow(w)) assertLive('weightNorm', w);
  const be = backendOf('weightNorm', w instanceof QuantizedWeight ? w.data : w, a, b);
  const tw = !!options.transposeW;
  const [out, inF] = tw ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
  if (w.shape.length !== 2 || a.rank !== 2 || b.rank !== 2 || a.shape[1] !== inF || b.shape[0] !== out || a.shape[0] !== b.shape[1]) {
    throw new ShapeError(
      `weightNorm: W ${shapeStr(w.shape)}${tw ? ' (transposed)' : ''}, A ${shapeStr(a.shape)}, B ${shapeStr(b.shape)} do not fit [out, in], [r, in], [out, r]`,
    );
  }
  if (isNarrow(w)) {
    // A narrow W: the backend's fused kernel, else the float32 path over W widened into a temporary.
    if (be.weightNormNarrow)
      return tidy(() => wrap(be, be.weightNormNarrow!(weightInfo(w), a.info, b.info, scale, { transposeW: tw }), [out], 'float32'));
    return noGrad(() => tidy(() => weightNorm(widen(w), a, b, scale, options)));
  }
  const wt = w as Tensor;
  if (be.weightNorm) return wrap(be, be.weightNorm(wt.info, a.info, b.info, scale, { transposeW: tw }), [out], 'float32');
  return noGrad(() => weightNormComposite(wt, a, b, scale, tw));
}

/** The reference: materialises B·A (out×in floats). */
export function weightNormComposite(w: Tensor, a: Tensor, b: Tensor, scale: number, transposeW: boolean): Tensor {
  return tidy(() => {
    const wOi = transposeW ? transpose(w, [1, 0]) : w;
    const v = add(wOi, mulScalar(matmul(b, a), scale));
    return sqrt(sum(mul(v, v), 1));
  });
}

/**
 * bias + g ⊙ (base + scale·lora) with base and lora [..., out], g [out]. Differentiable in base, lora, g
 * and bias.
 */
export function doraCompose(base: Tensor, lora: Tensor, g: Tensor, scale: number, bias: Tensor | null): Tensor {
  return tidy(() => {
    const be = backendOf('doraCompose', base, lora, g, ...(bias ? [bias] : []));
    const out = base.shape[base.rank - 1]!;
    if (!sameShapes(base, lora) || g.size !== out || (bias && bias.size !== out)) {
      throw new ShapeError(
        `doraCompose: base ${shapeStr(base.shape)}, lora ${shapeStr(lora.shape)}, g ${shapeStr(g.shape)}${bias ? `, bias ${shapeStr(bias.shape)}` : ''} do not fit`,
      );
    }
    const g1 = reshape(g, [out]);
    const b1 = bias ? reshape(bias, [out]) : null;
    const y = be.doraCompose
      ? wrap(be, be.doraCompose(base.info, lora.info, g1.info, scale, b1?.info ?? null), base.shape, 'float32')
      : noGrad(() => doraComposeComposite(base, lora, g1, scale, b1));
    return recordCompose(y, base, lora, g, scale, bias);
  });
}

/**
 * Attaches doraCompose's backward to `y` = bias + g ⊙ (base + scale·lora) computed by any kernel. The
 * gradients of base, lora and bias need only g; g's needs Σ dy ⊙ (base + scale·lora) over the rows, so
 * the node keeps that one sum c (activation-sized) instead of base and lora — PEFT keeps both — and
 * nothing activation-sized when g takes no gradient (cached or frozen magnitude).
 */
export function recordCompose(y: Tensor, base: Tensor, lora: Tensor, g: Tensor, scale: number, bias: Tensor | null): Tensor {
  return tidy(() => {
    const out = base.shape[base.rank - 1]!;
    const g1 = reshape(g, [out]);
    const inputs = [base, lora, g, bias];
    if (!isGradEnabled() || !inputs.some((t) => t?.requiresGrad)) return y;
    const needC = g.requiresGrad;
    const c = needC ? noGrad(() => composeSum(base, lora, scale)) : null;
    // Backward allocates at most one activation-sized temporary at a time (each inner tidy frees its
    // product before the next), so DoRA's step peaks barely above LoRA's.
    return record('doraCompose', y, inputs, c ? [g1, c] : [g1], (dy, [sg, sc]) => [
      base.requiresGrad ? mul(dy, sg!) : null,
      lora.requiresGrad
        ? mul(
            dy,
            tidy(() => mulScalar(sg!, scale)),
          )
        : null,
      g.requiresGrad ? reshape(sumTo(mul(dy, sc!), [out]), g.shape) : null,
      bias?.requiresGrad ? reshape(sumTo(dy, [out]), bias.shape) : null,
    ]);
  });
}

/** base + scale·lora in float32: the backend's compose kernel with g = 1 (one pass) when it has one. */
function composeSum(base: Tensor, lora: Tensor, scale: number): Tensor {
  return tidy(() => {
    const be = base.backend;
    if (!be.doraCompose || !sameShapes(base, lora)) return add(base, mulScalar(lora, scale));
    const out = base.shape[base.rank - 1]!;
    const one = full([out], 1, { backend: be });
    return wrap(be, be.doraCompose(base.info, lora.info, one.info, scale, null), base.shape, 'float32');
  });
}

function sameShapes(a: Tensor, b: Tensor): boolean {
  return a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i]);
}

export function doraComposeComposite(base: Tensor, lora: Tensor, g: Tensor, scale: number, bias: Tensor | null): Tensor {
  return tidy(() => {
    const y = mul(g, add(base, mulScalar(lora, scale)));
    return bias ? add(bias, y) : y;
  });
}
