/**
 * DoRA: y = b + g ⊙ (x·Wᵀ + s·B(A(x))), g = m / ‖W + s·B·A‖ (the norm a constant in backward); merge
 * W ← g ⊙ (W + s·ΔW) with the norm from the unmerged base, kept for unmerge. The norm uses the dense base
 * weight (a quantized base dequantized, as PEFT's QDoRA). Eval-mode scales come from DoRA caching when on.
 */
import {
  composeAdapter,
  composeAdapterDropout,
  doraMerge,
  doraUnmerge,
  doraLinear,
  doraWeightNorm,
  isGradEnabled,
  type LayerGeometry,
  magnitudeScale,
  magnitudeShape,
  noGrad,
  ops,
  type Tensor,
  type Weight,
} from '@dorajs/core';
import { DoraCaching } from '../layers/dora-caching.js';
import { delta } from './lora.js';
import { recomputes } from './recompute.js';
import type { AdapterVariant, MergeInput, VariantHost } from './variant.js';

function magnitudeOf(input: MergeInput): Tensor {
  return input.tensors.m!;
}

/**
 * g = m / ‖W + s·B·A‖ [out] from the DoRA cache when caching applies (eval mode, caching on), computing
 * and storing it on a miss; null when it does not (the caller computes the norm, fused where it can).
 */
function cachedScale(host: VariantHost, name: string): Tensor | null {
  const mag = host.lora_magnitude_vector.get(name)!;
  if (!DoraCaching.enabled || host.training) {
    // PEFT empties a layer's cache whenever it computes the norm with caching off.
    mag.clearCache();
    return null;
  }
  const m = mag.weight;
  const { a, b } = host.adapterWeights(name)!;
  const s = host.settingsOf(name).scaling;
  const sources = [host.baseWeight, a, b, m];
  let hit = mag.cached(sources, s);
  if (!hit) {
    const norm = doraWeightNorm(host.geometry, host.denseWeight(), a, b, s);
    const g = noGrad(() => magnitudeScale(m, norm));
    mag.store(sources, s, norm, g);
    hit = { norm, g };
  }
  // The cached g carries no gradient; recompute m / norm (out floats) when m must receive one.
  if (isGradEnabled() && m.requiresGrad) return magnitudeScale(m, hit.norm);
  return ops.reshape(hit.g, hit.g.shape);
}

/** g = m / ‖W + s·B·A‖ [out] for one adapter, from the cache when DoRA caching applies. */
function doraScale(host: VariantHost, name: string): Tensor {
  const cached = cachedScale(host, name);
  if (cached) return cached;
  const { a, b } = host.adapterWeights(name)!;
  const mag = host.lora_magnitude_vector.get(name)!;
  const memo = host.training ? mag.normMemo : null;
  return magnitudeScale(mag.weight, doraWeightNorm(host.geometry, host.denseWeight(), a, b, host.settingsOf(name).scaling, memo));
}

export const doraVariant: AdapterVariant = {
  name: 'dora',
  stateTensors: [{ name: 'm', container: 'lora_magnitude_vector' }],

  init(geometry: LayerGeometry, w: Weight, a: Tensor, b: Tensor, scale: number) {
    const norm = doraWeightNorm(geometry, w, a, b, scale);
    return { m: ops.reshape(norm, magnitudeShape(geometry, norm.size)) };
  },

  forward(host, name, x, accIn, bias) {
    const s = host.settingsOf(name);
    if (accIn === null && host.geometry.kind === 'linear' && !recomputes(host, s)) {
      // The first adapter on a Linear/Conv1D: one fused DoRA linear (base matmul, branch, norm, compose).
      const { a, b } = host.adapterWeights(name)!;
      const g = cachedScale(host, name);
      const magnitude = host.lora_magnitude_vector.get(name)!;
      const mag = g ? { g } : { m: magnitude.weight };
      // A training forward reuses the previous one's norm while W, A, B and the scale are unchanged.
      const memo = host.training ? magnitude.normMemo : null;
      const y = doraLinear(x, host.denseWeight(), a, b, s.scaling, bias, mag, { transposeW: !!host.geometry.fanInFanOut }, memo);
      return { y, biasAdded: bias !== null };
    }
    const acc = accIn ?? host.baseOut(x);
    if (recomputes(host, s)) {
      // PEFT's training-with-dropout form: the correction term uses the dropped input too.
      const xd = host.dropout(name, x);
      const y = composeAdapterDropout(host.geometry, acc, host.baseOut(xd), host.branch(name, xd), s.scaling, doraScale(host, name));
      return { y, biasAdded: false };
    }
    return {
      y: composeAdapter(host.geometry, acc, host.branch(name, x), s.scaling, doraScale(host, name), bias),
      biasAdded: bias !== null,
    };
  },

  deltaWeight: delta,

  merge(geometry, w, wBase, input) {
    const { a, b } = input.tensors;
    const norm = doraWeightNorm(geometry, wBase, a, b, input.scale);
    return { weight: doraMerge(geometry, w, delta(geometry, w, input), magnitudeOf(input), norm), record: { norm } };
  },

  unmerge(geometry, w, input, record) {
    return doraUnmerge(geometry, w, delta(geometry, w, input), magnitudeOf(input), record['norm']!);
  },

  clearCache(host, name) {
    const mag = host.lora_magnitude_vector.get(name);
    mag?.clearCache();
    mag?.normMemo.clear();
  },
};
