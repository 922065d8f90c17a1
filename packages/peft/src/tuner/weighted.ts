/**
 * PEFT's add_weighted_adapter for plain LoRA: a new adapter whose B·A is a weighted combination of existing
 * ones. 'cat' concatenates the ranks (exact: ΔW_new = Σ wₖ·sₖ·ΔWₖ); 'linear' averages A and B with
 * √(wₖ·sₖ) (PEFT's approximation; needs equal ranks). DoRA adapters are refused: a weighted sum of
 * magnitudes has no meaning and PEFT silently drops them (issue #3761).
 */
import { noGrad, ops, type Tensor, tidy, zeros } from '@dorajs/core';
import { LoraConfig } from '../config/lora-config.js';
import { AdapterNameError, LoraConfigError, UnsupportedAdapterOperationError } from '../errors.js';
import { internalsOf } from '../internal.js';
import type { LoraLayer } from '../layers/lora-layer.js';
import type { AdapterTensors } from '../variants/variant.js';
import type { PeftModel } from '../peft-model.js';
import { applyInjection, planInjection } from './inject.js';

export type WeightedCombination = 'cat' | 'linear';

export async function addWeightedAdapter(
  peft: PeftModel,
  adapters: readonly string[],
  weights: readonly number[],
  name: string,
  combination: WeightedCombination,
): Promise<void> {
  const internals = internalsOf(peft);
  internals.assertNewName(name);
  if (adapters.length === 0 || adapters.length !== weights.length) {
    throw new LoraConfigError(`add_weighted_adapter: ${adapters.length} adapters and ${weights.length} weights`);
  }
  const configs = adapters.map((a) => {
    const c = peft.peftConfig.get(a);
    if (!c) throw new AdapterNameError(`add_weighted_adapter: no adapter named '${a}'`);
    return c;
  });
  const dora = adapters.filter((_, i) => configs[i]!.useDora);
  if (dora.length) {
    throw new UnsupportedAdapterOperationError(
      `add_weighted_adapter cannot combine DoRA adapters (${dora.map((d) => `'${d}'`).join(', ')}): their magnitude vectors have no weighted sum, and PEFT's result silently ignores them (PEFT issue #3761). Merge them into the base weights instead.`,
    );
  }
  if (!['cat', 'linear'].includes(combination)) {
    throw new UnsupportedAdapterOperationError(
      `add_weighted_adapter: combination_type '${combination}' is not implemented by dorajs (supported: 'cat', 'linear')`,
    );
  }
  const layers = peft.loraLayers().filter((l) => adapters.some((a) => l.settings(a)));
  if (combination === 'linear') {
    const ranks = new Set(layers.flatMap((l) => adapters.map((a) => l.settings(a)?.r).filter((r) => r !== undefined)));
    if (ranks.size > 1) throw new LoraConfigError('All adapters must have the same r value when using combination_type linear.');
  }
  const newRank = Math.max(...layers.map((l) => rankOf(l, adapters, combination)));
  const grouped = layers.find((l) => (l.geometry.groups ?? 1) > 1);
  if (grouped)
    throw new UnsupportedAdapterOperationError(
      `add_weighted_adapter: ${grouped.base_layer.typeName} '${grouped._path}' has groups > 1; its B cannot be concatenated`,
    );

  // Scaling of the new adapter is exactly 1 (alpha = r, no rsLoRA): the sources' scales are folded into A.
  const config = new LoraConfig({
    ...configs[0]!.options(),
    r: newRank,
    loraAlpha: newRank,
    useRslora: false,
    rankPattern: {},
    alphaPattern: {},
    targetModules: layers.map((l) => l._path),
    layersToTransform: null,
    layersPattern: null,
    excludeModules: null,
    modulesToSave: null,
  });
  const model = peft.getBaseModel();
  const plan = planInjection(model, config, name);
  const tensors: AdapterTensors[] = plan.targets.map((t) => {
    const layer = layers.find((l) => l._path === t.path)!;
    return combine(layer, adapters, weights, combination, t.shapes);
  });
  applyInjection(model, plan, tensors, internals.random);
  internals.registerAdapter(name, plan.config);
}

function rankOf(layer: LoraLayer, adapters: readonly string[], combination: WeightedCombination): number {
  const ranks = adapters.map((a) => layer.settings(a)?.r ?? 0);
  return combination === 'cat' ? ranks.reduce((x, y) => x + y, 0) : Math.max(...ranks);
}

/** A [r, …] and B [out, r, …] of the combination, padded with zeros to the new rank. */
function combine(
  layer: LoraLayer,
  adapters: readonly string[],
  weights: readonly number[],
  combination: WeightedCombination,
  shapes: { a: readonly number[]; b: readonly number[] },
): AdapterTensors {
  return tidy(() =>
    noGrad(() => {
      const be = layer.baseWeight.backend;
      const as: Tensor[] = [];
      const bs: Tensor[] = [];
      adapters.forEach((name, i) => {
        const s = layer.settings(name);
        const w = layer.adapterWeights(name);
        if (!s || !w) return;
        if (combination === 'cat') {
          as.push(ops.mulScalar(w.a, weights[i]! * s.scaling));
          bs.push(w.b);
        } else {
          const f = Math.sqrt(weights[i]! * s.scaling);
          as.push(ops.mulScalar(w.a, f));
          bs.push(ops.mulScalar(w.b, f));
        }
      });
      let a: Tensor;
      let b: Tensor;
      if (combination === 'cat') {
        a = ops.concat(as, 0);
        b = ops.concat(bs, 1);
      } else {
        a = as.reduce((x, y) => ops.add(x, y));
        b = bs.reduce((x, y) => ops.add(x, y));
      }
      const r = shapes.a[0]!;
      if (a.shape[0]! < r) a = ops.concat([a, zeros([r - a.shape[0]!, ...shapes.a.slice(1)], { backend: be })], 0);
      if (b.shape[1]! < r) b = ops.concat([b, zeros([shapes.b[0]!, r - b.shape[1]!, ...shapes.b.slice(2)], { backend: be })], 1);
      // Copies, so the new adapter never shares storage with its sources.
      return { a: ops.mulScalar(a, 1), b: ops.mulScalar(b, 1) };
    }),
  );
}
