/**
 * The DoRA and LoRA math, once for every layer kind and backend.
 *
 *   W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖         (norm per output feature, detached in backward)
 *   y  = b + g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ),  g = m / ‖W + s·B·A‖
 *
 * Rows whose norm is exactly zero get g = 0 (that output is the bias alone) instead of PEFT's inf/NaN;
 * every other row follows PEFT's formula and order of operations.
 */
import { ConfigError, ShapeError } from '../errors.js';
import { add, addScalar, div, equal, mul, mulScalar, sub, where } from '../ops/index.js';
import { type ConvDims, convNd, type ConvNdOptions } from '../ops/conv-nd.js';
import { gather } from '../ops/nn.js';
import { reshape, transpose } from '../ops/layout.js';
import { matmul, matmulLastAxis, recordMatmul } from '../ops/matmul.js';
import { doraCompose, recordCompose, weightNorm } from '../ops/fused.js';
import { backendOf, wrap } from '../ops/util.js';
import type { WeightNormOptions } from '../backend/backend.js';
import { noGrad, tidy } from '../tensor/scope.js';
import { reusedInRecompute, saveForRecompute } from '../tensor/checkpoint.js';
import { assertLive, isNarrow, narrowMatmul, recordNarrowMatmul, type Weight, weightInfo } from '../ops/narrow.js';
import { QuantizedWeight } from '../quant/quantized-weight.js';
import { shapeStr } from '../tensor/shape.js';
import { full, type Tensor } from '../tensor/tensor.js';
import { convDims, type LayerGeometry, matrixView } from './geometry.js';
import type { NormMemo } from './norm-memo.js';

/** LoRA's scale: alpha / r, or alpha / √r with rsLoRA. */
export function loraScaling(alpha: number, r: number, useRslora = false): number {
  if (!(r > 0)) throw new ConfigError(`LoRA rank must be > 0, got ${r}`);
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/**
 * ‖W + s·B·A‖ per output feature, detached: [out] (PEFT shapes it per layer kind; see magnitudeShape). A
 * narrow W (bf16, f16, a QuantizedWeight on a Linear) is normed as dequantized, through the fused kernel.
 */
export function doraWeightNorm(geo: LayerGeometry, w: Weight, a: Tensor, b: Tensor, scale: number, memo: NormMemo | null = null): Tensor {
  // Detached, so a checkpointed layer's recompute (and, with a memo, the next forward on the same
  // W, A, B versions) takes this norm instead of a second pass over W.
  const deps = ['doraWeightNorm', geo.kind, !!geo.fanInFanOut, w, a, b, scale];
  const reused = reusedInRecompute(deps) ?? memo?.get(deps) ?? null;
  if (reused) {
    saveForRecompute(deps, reused);
    return reused;
  }
  const norm = tidy(() => {
    return noGrad(() => {
      const v = matrixView(geo, w, a, b);
      return weightNorm(v.w, v.a, v.b, scale, { transposeW: v.transposeW });
    });
  });
  saveForRecompute(deps, norm);
  memo?.set(deps, norm);
  return norm;
}

/**
 * The shape PEFT gives the magnitude vector: [out] for Linear/Conv1D/Embedding, [1, out, 1…] for convs
 * ([1, out, 1] Conv1d, [1, out, 1, 1] Conv2d, [1, out, 1, 1, 1] Conv3d).
 */
export function magnitudeShape(geo: LayerGeometry, out: number): number[] {
  const dims = convDims(geo);
  return dims ? [1, out, ...ones(dims)] : [out];
}

const ones = (n: number): number[] => Array<number>(n).fill(1);

/** A per-feature vector [out] shaped to broadcast over a conv output's channel axis ([1, out, 1…]). */
function channelView(geo: LayerGeometry, v: Tensor): Tensor {
  return reshape(v, [1, v.size, ...ones(convDims(geo))]);
}

/**
 * g = m / n, with g = 0 where n = 0 (the zero-norm guard). Differentiable in m; n is a constant.
 * Returns [out].
 */
export function magnitudeScale(m: Tensor, norm: Tensor): Tensor {
  return tidy(() => {
    const out = norm.size;
    if (m.size !== out) throw new ShapeError(`DoRA magnitude ${shapeStr(m.shape)} does not match ${out} output features`);
    const m1 = reshape(m, [out]);
    const zero = equal(norm, full([], 0, { backend: norm.backend }));
    // Divide by 1 where the norm is 0 so the masked branch stays finite in backward too.
    const safe = where(zero, full([], 1, { backend: norm.backend }), norm);
    return where(zero, full([], 0, { backend: norm.backend }), div(m1, safe));
  });
}

/** The LoRA branch without its scale: B(A(x)) in the layer's own operator. */
export function loraBranch(geo: LayerGeometry, x: Tensor, a: Tensor, b: Tensor, conv?: ConvNdOptions): Tensor {
  return tidy(() => {
    switch (geo.kind) {
      case 'linear':
        return matmulLastAxis(matmulLastAxis(x, a, true), b, true);
      case 'embedding':
        // lookup(x, Aᵀ) · Bᵀ
        return matmulLastAxis(gather(transpose(a, [1, 0]), x), b, true);
      case 'conv1d':
      case 'conv2d':
      case 'conv3d': {
        const c = conv ?? {};
        const dims = convDims(geo) as ConvDims;
        const h = convNd(dims, x, a, null, { stride: c.stride ?? 1, padding: c.padding ?? 0, dilation: c.dilation ?? 1, groups: 1 });
        return convNd(dims, h, b, null, { groups: geo.groups ?? 1 });
      }
    }
  });
}

/**
 * Combines a base result (without bias) with one adapter's branch: bias + g ⊙ (base + s·lora) for DoRA
 * (g given), bias + base + s·lora for LoRA (g null). Conv2d results have their features on axis 1.
 */
export function composeAdapter(
  geo: LayerGeometry,
  base: Tensor,
  lora: Tensor,
  scale: number,
  g: Tensor | null,
  bias: Tensor | null,
): Tensor {
  return tidy(() => {
    if (convDims(geo)) {
      let y = add(base, mulScalar(lora, scale));
      if (g) y = mul(channelView(geo, g), y);
      return bias ? add(y, channelView(geo, bias)) : y;
    }
    if (g) return doraCompose(base, lora, g, scale, bias);
    const y = add(base, mulScalar(lora, scale));
    return bias ? add(y, bias) : y;
  });
}

/**
 * The training-with-dropout form (PEFT's recompute path): base + bias + (g − 1) ⊙ baseDropped + g ⊙ s·loraDropped,
 * where `baseDropped` = x̃·Wᵀ and `loraDropped` = B(A(x̃)) use the dropped-out input.
 */
export function composeAdapterDropout(
  geo: LayerGeometry,
  result: Tensor,
  baseDropped: Tensor,
  loraDropped: Tensor,
  scale: number,
  g: Tensor,
): Tensor {
  return tidy(() => {
    const shaped = convDims(geo) ? channelView(geo, g) : g;
    return add(result, add(mul(addScalar(shaped, -1), baseDropped), mul(shaped, mulScalar(loraDropped, scale))));
  });
}

/** s·ΔW in W's stored layout (what merging adds to W). */
export function deltaWeight(geo: LayerGeometry, w: Tensor, a: Tensor, b: Tensor, scale: number): Tensor {
  return tidy(() => {
    return noGrad(() => {
      switch (geo.kind) {
        case 'linear': {
          const ba = mulScalar(matmul(b, a), scale);
          return geo.fanInFanOut ? transpose(ba, [1, 0]) : ba;
        }
        case 'embedding':
          return mulScalar(transpose(matmul(b, a), [1, 0]), scale);
        case 'conv1d':
        case 'conv2d':
        case 'conv3d': {
          if ((geo.groups ?? 1) !== 1) {
            throw new ConfigError(
              `merging a ${geo.kind} adapter with groups ${geo.groups} is not possible: its delta is not a grouped kernel (PEFT refuses too)`,
            );
          }
          const r = a.shape[0]!;
          return mulScalar(reshape(matmul(reshape(b, [w.shape[0]!, r]), reshape(a, [r, -1])), w.shape), scale);
        }
      }
    });
  });
}

/** Reshapes the per-feature factor [out] so it scales W's stored layout feature-wise. */
function factorView(geo: LayerGeometry, f: Tensor): Tensor {
  const dims = convDims(geo);
  if (dims) return reshape(f, [f.size, ...ones(dims + 1)]);
  const columns = geo.kind === 'embedding' || !!geo.fanInFanOut;
  return reshape(f, columns ? [1, f.size] : [f.size, 1]);
}

/** W ← f ⊙ (W + Δ) with f = m / norm (norm taken from the unmerged base). Returns the new weight. */
export function doraMerge(geo: LayerGeometry, w: Tensor, delta: Tensor, m: Tensor, normBase: Tensor): Tensor {
  return tidy(() => {
    return noGrad(() => mul(factorView(geo, magnitudeScale(m, normBase)), add(w, delta)));
  });
}

/** Inverse of doraMerge: W ← W / f − Δ; rows with f = 0 (zero norm ⇒ W + Δ = 0) come back as −Δ. */
export function doraUnmerge(geo: LayerGeometry, merged: Tensor, delta: Tensor, m: Tensor, normBase: Tensor): Tensor {
  return tidy(() => {
    return noGrad(() => {
      const f = factorView(geo, magnitudeScale(m, normBase));
      const zero = equal(f, full([], 0, { backend: f.backend }));
      const safe = where(zero, full([], 1, { backend: f.backend }), f);
      return sub(where(zero, full([], 0, { backend: f.backend }), div(merged, safe)), delta);
    });
  });
}

/**
 * One DoRA adapter on a Linear (or Conv1D with transposeW) in the reuse form, its base matmul included:
 * y = bias + g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ), with g given (DoRA caching) or m / ‖W + s·B·A‖. Explicit fusion:
 * the backend is asked for the base matmul and the norm from one pass over W (`matmulWeightNorm`), else
 * for the base matmul with the compose in its epilogue (`matmulCompose`); without either, the same numbers
 * come from matmul, weightNorm and doraCompose. Differentiable in x, W, A, B, m (or g) and bias.
 */
export function doraLinear(
  x: Tensor,
  w: Weight,
  a: Tensor,
  b: Tensor,
  scale: number,
  bias: Tensor | null,
  magnitude: { readonly m: Tensor } | { readonly g: Tensor },
  options: WeightNormOptions = {},
  memo: NormMemo | null = null,
): Tensor {
  return tidy(() => {
    const be = backendOf('doraLinear', x, w instanceof QuantizedWeight ? w.data : w, a, b);
    const tw = !!options.transposeW;
    const inF = x.shape[x.rank - 1]!;
    const [out, wIn] = tw ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
    const r = a.shape[0]!;
    if (
      w.shape.length !== 2 ||
      a.rank !== 2 ||
      b.rank !== 2 ||
      wIn !== inF ||
      a.shape[1] !== inF ||
      b.shape[0] !== out ||
      b.shape[1] !== r
    ) {
      throw new ShapeError(
        `doraLinear: x ${shapeStr(x.shape)}, W ${shapeStr(w.shape)}${tw ? ' (stored [in, out])' : ''}, A ${shapeStr(a.shape)}, B ${shapeStr(b.shape)} do not fit`,
      );
    }
    const x2 = x.rank === 2 ? x : reshape(x, [-1, inF]);
    const rows = x2.shape[0]!;
    const mm = { transposeB: !tw };
    const lora = matmul(matmul(x2, a, { transposeB: true }), b, { transposeB: true });
    const narrow = isNarrow(w);
    if (narrow) assertLive('doraLinear', w);
    const floatArgs = [x2, a, b].every((t) => t.dtype === 'float32');
    const f32 = !narrow && floatArgs;
    const wt = w as Tensor; // only read as a dense tensor where f32 holds
    let base: Tensor | null = null;
    let g: Tensor;
    // Inside a checkpointed layer's recompute, the forward's (detached) norm is reused, not recomputed.
    const normDeps = ['doraLinear', tw, w, a, b, scale];
    // A memo (the layer's previous forward on the same W, A, B versions) is not read where the backend
    // fuses the norm into the base matmul's pass over W: there the base would come from another kernel.
    const fusesNorm = floatArgs && !!be.matmulWeightNorm;
    const reused = 'g' in magnitude ? null : (reusedInRecompute(normDeps) ?? (fusesNorm ? null : (memo?.get(normDeps) ?? null)));
    if ('g' in magnitude) g = magnitude.g;
    else if (reused) {
      saveForRecompute(normDeps, reused);
      g = magnitudeScale(magnitude.m, reused);
    } else {
      // matmulWeightNorm takes any weight (a narrow one widened in registers: one read of packed W for both).
      const shared =
        floatArgs && be.matmulWeightNorm ? be.matmulWeightNorm(x2.info, weightInfo(w), a.info, b.info, scale, { transposeW: tw }) : null;
      let norm: Tensor;
      if (shared) {
        const raw = wrap(be, shared.base, [rows, out], 'float32');
        base = narrow ? recordNarrowMatmul(raw, x2, w, !tw) : recordMatmul(raw, x2, wt, mm);
        norm = wrap(be, shared.norm, [out], 'float32');
      } else norm = weightNorm(w, a, b, scale, { transposeW: tw });
      saveForRecompute(normDeps, norm);
      memo?.set(normDeps, norm);
      g = magnitudeScale(magnitude.m, norm);
    }
    let y: Tensor;
    if (!base && f32 && be.matmulCompose && g.size === out && (!bias || bias.size === out)) {
      const g1 = reshape(g, [out]);
      const b1 = bias ? reshape(bias, [out]) : null;
      const fused = be.matmulCompose(x2.info, wt.info, lora.info, g1.info, scale, b1?.info ?? null, { transposeW: tw });
      base = recordMatmul(wrap(be, fused.base, [rows, out], 'float32'), x2, wt, mm);
      y = recordCompose(wrap(be, fused.y, [rows, out], 'float32'), base, lora, g, scale, bias);
    } else y = doraCompose(base ?? (narrow ? narrowMatmul(x2, w, !tw) : matmul(x2, wt, mm)), lora, g, scale, bias);
    return x.rank === 2 ? y : reshape(y, [...x.shape.slice(0, -1), out]);
  });
}
