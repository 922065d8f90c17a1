/** Plain LoRA: y = base + s·B(A(x̃)), merge W ← W + s·ΔW. */
import { composeAdapter, deltaWeight, type LayerGeometry, ops, type Tensor } from '@dorajs/core';
import { recomputes } from './recompute.js';
import type { AdapterVariant, MergeInput, VariantHost } from './variant.js';

/** s·ΔW in W's stored layout (both variants add this to W). */
export function delta(geometry: LayerGeometry, w: Tensor, input: MergeInput): Tensor {
  return deltaWeight(geometry, w, input.tensors.a, input.tensors.b, input.scale);
}

export const loraVariant: AdapterVariant = {
  name: 'lora',
  stateTensors: [],

  init: () => ({}),

  forward(host: VariantHost, name: string, x: Tensor, accIn: Tensor | null, bias: Tensor | null) {
    const s = host.settingsOf(name);
    const acc = accIn ?? host.baseOut(x);
    if (recomputes(host, s))
      return { y: ops.add(acc, ops.mulScalar(host.branch(name, host.dropout(name, x)), s.scaling)), biasAdded: false };
    return { y: composeAdapter(host.geometry, acc, host.branch(name, x), s.scaling, null, bias), biasAdded: bias !== null };
  },

  deltaWeight: delta,

  merge: (geometry, w, _wBase, input) => ({ weight: ops.add(w, delta(geometry, w, input)), record: {} }),

  unmerge: (geometry, w, input) => ops.sub(w, delta(geometry, w, input)),

  clearCache: () => {},
};
