/**
 * Tier: PEFT parity of the core DoRA/LoRA math. Every layer-level fixture case is rebuilt from core layers,
 * the adapter tensors are read straight from PEFT's adapter_model.safetensors, and the outputs, gradients,
 * merged weights and AdamW steps are compared with what PEFT 0.21.0 computed.
 */
import {
  AdamW,
  backward,
  type Backend,
  composeAdapter,
  Conv2d,
  deltaWeight,
  doraMerge,
  doraWeightNorm,
  Embedding,
  type LayerGeometry,
  Layer,
  type Linear,
  loraBranch,
  loraScaling,
  magnitudeScale,
  type Module,
  ops,
  Parameter,
  type Tensor,
  tidy,
} from '@dorajs/core';
import type { ConformanceCase, ConformanceTier } from '../types.js';
import { type Owned, withOwned } from './owned.js';
import { buildFixtureModel, type FixtureCase, loadBaseWeights, loadFixtureCase, relativeError, upload } from './peft-fixtures.js';

type BaseLayer = Linear | Embedding | Conv2d;

/** A minimal adapter wrapper: just enough to drive the core math the way PEFT's layers do. */
class DoraTestLayer extends Layer {
  constructor(
    readonly base_layer: BaseLayer,
    readonly A: Parameter,
    readonly B: Parameter,
    readonly m: Parameter | null,
    readonly _scale: number,
  ) {
    super();
  }

  get geo(): LayerGeometry {
    const b = this.base_layer;
    return b instanceof Embedding
      ? { kind: 'embedding' }
      : b instanceof Conv2d
        ? { kind: 'conv2d', groups: b.params.groups }
        : { kind: 'linear' };
  }

  forward(x: Tensor): Tensor {
    const b = this.base_layer;
    const geo = this.geo;
    const base =
      b instanceof Embedding
        ? ops.embedding(b.weight, x)
        : b instanceof Conv2d
          ? ops.conv2d(x, b.weight, null, b.params)
          : ops.linear(x, b.weight, null);
    const lora = loraBranch(geo, x, this.A, this.B, b instanceof Conv2d ? b.params : undefined);
    const g = this.m ? magnitudeScale(this.m, doraWeightNorm(geo, b.weight, this.A, this.B, this._scale)) : null;
    const bias = b instanceof Embedding ? null : b.bias;
    return composeAdapter(geo, base, lora, this._scale, g, bias);
  }

  /** The merged base layer weight: DoRA's f ⊙ (W + Δ), or LoRA's W + Δ. */
  mergedWeight(): Tensor {
    const w = this.base_layer.weight;
    return tidy(() => {
      const delta = deltaWeight(this.geo, w, this.A, this.B, this._scale);
      return this.m ? doraMerge(this.geo, w, delta, this.m, doraWeightNorm(this.geo, w, this.A, this.B, this._scale)) : ops.add(w, delta);
    });
  }
}

function attachAdapters(model: Module, fc: FixtureCase, backend: Backend, own: Owned): Map<string, DoraTestLayer> {
  const { r, lora_alpha, use_dora, target_modules } = fc.meta.config;
  const scale = loraScaling(lora_alpha, r);
  const layers = new Map<string, DoraTestLayer>();
  for (const path of target_modules) {
    const base = model.getSubmodule(path) as BaseLayer;
    const prefix = `base_model.model.${path}`;
    const emb = base instanceof Embedding;
    const file = `${fc.name}/adapter/adapter_model.safetensors`;
    const get = (k: string) => own.add(new Parameter(own.add(upload(fc.adapter, `${prefix}.${k}`, backend, file))));
    const A = get(emb ? 'lora_embedding_A' : 'lora_A.weight');
    const B = get(emb ? 'lora_embedding_B' : 'lora_B.weight');
    const m = use_dora ? get('lora_magnitude_vector') : null;
    const layer = new DoraTestLayer(base, A, B, m, scale);
    model.setSubmodule(path, layer);
    layers.set(path, layer);
  }
  model.requiresGrad(false);
  for (const l of layers.values()) for (const p of [l.A, l.B, l.m]) if (p) p.requiresGrad = true;
  return layers;
}

const LAYER_CASES = ['linear', 'linear3d', 'embedding', 'conv2d', 'lora_plain', 'mlp_adamw'] as const;

/** Where this repository keeps the PEFT fixtures (packages/conformance/{src,dist}/tiers → fixtures/peft). */
export const DEFAULT_FIXTURES_DIR = new URL('../../../../fixtures/peft/', import.meta.url).pathname;

/** The PEFT parity tier over the fixtures in `fixturesDir`; the bound is the suite's rtol (1e-5 CPU, 1e-4 GPU). */
export function peftParityTier(fixturesDir: string = DEFAULT_FIXTURES_DIR): ConformanceTier {
  return {
    id: 'parity',
    title: 'PEFT parity of the core DoRA math (PEFT 0.21.0 fixtures: outputs, gradients, merges, AdamW)',
    cases: LAYER_CASES.map(
      (name): ConformanceCase => ({
        id: `parity/${name}`,
        title: `fixture '${name}' through core layers and the DoRA math`,
        async run(ctx) {
          await withOwned((own) => checkCase(loadFixtureCase(fixturesDir, name), ctx.backend, ctx.tolerance.rtol, own));
        },
      }),
    ),
  };
}

async function expectClose(label: string, actual: Tensor, expected: Tensor, tol: number): Promise<void> {
  const e = relativeError(await actual.float32(), await expected.float32());
  if (!(e <= tol)) throw new Error(`${label}: relative error ${e} > ${tol}`);
}

async function checkCase(fc: FixtureCase, backend: Backend, tol: number, own: Owned): Promise<void> {
  const T = (k: string) => own.add(upload(fc.tensors, k, backend, `${fc.name}/tensors.safetensors`));
  const model = own.add(buildFixtureModel(fc.name, backend));
  loadBaseWeights(model, fc, backend);
  const floatInput = fc.tensors.has('input.x');
  const x = T(floatInput ? 'input.x' : 'input.ids');

  await expectClose('out.base', own.add(tidy(() => model.forward(x))), T('out.base'), tol);
  const layers = attachAdapters(model, fc, backend, own);

  model.eval();
  const isTrainingCase = !!fc.meta.adamw;
  if (!isTrainingCase) await expectClose('out.dora', own.add(tidy(() => model.forward(x))), T('out.dora'), tol);
  model.train();
  if (floatInput) x.requiresGrad = true;
  const R = T('grad.R');
  // Intermediates die with the scope; the graph keeps what backward needs.
  const { out, loss } = tidy(() => {
    const y = model.forward(x);
    return { out: y, loss: ops.sum(ops.mul(y, R)) };
  });
  if (!isTrainingCase) await expectClose('out.train', out, T('out.train'), tol);
  backward(loss);
  for (const [path, l] of layers) {
    const emb = l.base_layer instanceof Embedding;
    const names: [string, Parameter | null][] = [
      [emb ? 'lora_embedding_A.default' : 'lora_A.default.weight', l.A],
      [emb ? 'lora_embedding_B.default' : 'lora_B.default.weight', l.B],
      ['lora_magnitude_vector.default.weight', l.m],
    ];
    for (const [k, p] of names) {
      if (!p) continue;
      if (!p.grad) throw new Error(`${path}.${k} has no gradient`);
      await expectClose(`grad ${path}.${k}`, p.grad!, T(`grad.base_model.model.${path}.${k}`), tol);
    }
  }
  if (floatInput && fc.tensors.has('grad.input.x')) await expectClose('grad.input.x', x.grad!, T('grad.input.x'), tol);
  loss.dispose();
  out.dispose();

  if (fc.meta.adamw) await checkAdamw(fc, model, layers, x, T, tol, own);

  // Merged weights (of the trained adapter in training cases) and the merged model's output.
  model.eval();
  for (const [path, l] of layers) {
    const merged = own.add(l.mergedWeight());
    await expectClose(
      `merged ${path}.weight`,
      merged,
      own.add(upload(fc.merged, `${path}.weight`, backend, `${fc.name}/merged.safetensors`)),
      tol,
    );
    model.setSubmodule(path, l.base_layer);
    l.base_layer.weight.assign(merged);
  }
  await expectClose('out.merged', own.add(tidy(() => model.forward(x))), T('out.merged'), tol);
}

async function checkAdamw(
  fc: FixtureCase,
  model: Module & { forward(x: Tensor): Tensor },
  layers: Map<string, DoraTestLayer>,
  x: Tensor,
  T: (k: string) => Tensor,
  tol: number,
  own: Owned,
): Promise<void> {
  const a = fc.meta.adamw!;
  const params = [...layers.values()].flatMap((l) => [l.A, l.B, l.m]).filter((p): p is Parameter => p !== null);
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
  x.requiresGrad = false;
  const opt = new AdamW(params, { lr: a.lr, betas: a.betas, eps: a.eps, weightDecay: a.weight_decay });
  for (let step = 0; step < a.steps; step++) {
    const R = T('grad.R');
    tidy(() => {
      const out = model.forward(x);
      backward(ops.mulScalar(ops.sum(ops.mul(out, R)), 1 / out.size));
    });
    opt.step();
    opt.zeroGrad();
  }
  opt.dispose();
  for (const [path, l] of layers) {
    const names: [string, Parameter | null][] = [
      ['lora_A.default.weight', l.A],
      ['lora_B.default.weight', l.B],
      ['lora_magnitude_vector.default.weight', l.m],
    ];
    for (const [k, p] of names) if (p) await expectClose(`trained ${path}.${k}`, p, T(`trained.base_model.model.${path}.${k}`), tol);
  }
  model.eval();
  await expectClose('out.trained', own.add(tidy(() => model.forward(x))), T('out.trained'), tol);
}
