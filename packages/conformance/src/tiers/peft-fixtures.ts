/**
 * Loads a PEFT golden-fixture case (fixtures/peft/<case>/, computed by PEFT 0.21.0) and rebuilds its
 * small base model from core layers. Used by the parity tier; Node only (reads files).
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Backend,
  Conv2d,
  Embedding,
  fromHostTensor,
  type HostTensor,
  Linear,
  Module,
  ops,
  parseSafetensors,
  type Tensor,
} from '@dorajs/core';

export interface FixtureCase {
  readonly name: string;
  readonly dir: string;
  readonly meta: { config: { r: number; lora_alpha: number; use_dora: boolean; target_modules: string[] }; adamw?: AdamwMeta };
  readonly tensors: ReadonlyMap<string, HostTensor>;
  readonly base: ReadonlyMap<string, HostTensor>;
  readonly adapter: ReadonlyMap<string, HostTensor>;
  readonly merged: ReadonlyMap<string, HostTensor>;
}

export interface AdamwMeta {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  steps: number;
}

function readST(path: string): ReadonlyMap<string, HostTensor> {
  return parseSafetensors(readFileSync(path), path).tensors;
}

/** Reads one case; a missing case folder (or fixtures folder) is an error naming the path, never a skip. */
export function loadFixtureCase(root: string, name: string): FixtureCase {
  const dir = join(root, name);
  if (!existsSync(join(dir, 'meta.json'))) throw new Error(`PEFT fixture case '${name}' not found: ${join(dir, 'meta.json')} is missing`);
  return {
    name,
    dir,
    meta: JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')),
    tensors: readST(join(dir, 'tensors.safetensors')),
    base: readST(join(dir, 'base', 'model.safetensors')),
    adapter: readST(join(dir, 'adapter', 'adapter_model.safetensors')),
    merged: readST(join(dir, 'merged.safetensors')),
  };
}

export function upload(map: ReadonlyMap<string, HostTensor>, key: string, backend: Backend, file = '?'): Tensor {
  const h = map.get(key);
  if (!h) throw new Error(`fixture ${file} has no key '${key}'`);
  return fromHostTensor(h, backend, { file, key });
}

/** The base models of the layer-level cases, as the fixtures README describes them. */
export class FixtureModel extends Module {
  constructor(
    readonly layers: Record<string, Module>,
    private readonly _forward: (m: FixtureModel, x: Tensor) => Tensor,
  ) {
    super();
    Object.assign(this, layers);
  }

  forward(x: Tensor): Tensor {
    return this._forward(this, x);
  }
}

type Fwd = { forward(x: Tensor): Tensor };
const call = (m: FixtureModel, name: string, x: Tensor): Tensor => (m as unknown as Record<string, Fwd>)[name]!.forward(x);

export function buildFixtureModel(name: string, backend: Backend): FixtureModel {
  const o = { backend };
  switch (name) {
    case 'linear':
    case 'linear3d':
    case 'lora_plain':
      return new FixtureModel({ lin1: new Linear(16, 32, o), lin2: new Linear(32, 8, { ...o, bias: false }) }, (m, x) =>
        call(m, 'lin2', ops.relu(call(m, 'lin1', x))),
      );
    case 'mlp_adamw':
      return new FixtureModel({ lin1: new Linear(12, 20, o), lin2: new Linear(20, 6, { ...o, bias: false }) }, (m, x) =>
        call(m, 'lin2', ops.relu(call(m, 'lin1', x))),
      );
    case 'embedding':
      return new FixtureModel({ emb: new Embedding(40, 12, o), head: new Linear(12, 6, o) }, (m, x) => call(m, 'head', call(m, 'emb', x)));
    case 'conv2d':
      return new FixtureModel({ c1: new Conv2d(3, 6, 3, { ...o, padding: 1 }), c2: new Conv2d(6, 4, 1, o) }, (m, x) =>
        call(m, 'c2', ops.relu(call(m, 'c1', x))),
      );
    default:
      throw new Error(`no layer-level base model for fixture case '${name}'`);
  }
}

/** Loads the case's base weights into `model` (strict). */
export function loadBaseWeights(model: Module, fc: FixtureCase, backend: Backend): void {
  const values = new Map<string, Tensor>();
  for (const key of fc.base.keys()) values.set(key, upload(fc.base, key, backend, `${fc.name}/base/model.safetensors`));
  model.loadStateDict(values, { strict: true });
  for (const t of values.values()) t.dispose();
}

export { relativeError } from './relative-error.js';
