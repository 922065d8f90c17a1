/** Reading the PEFT golden fixtures (repo-root fixtures/peft, see its README) through core's safetensors reader. */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { type Backend, fromHostTensor, type HostTensor, type Module, type Tensor } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';

export const FIXTURES = fileURLToPath(new URL('../../../../fixtures/peft/', import.meta.url));

export const fixturePath = (name: string, ...parts: string[]) => join(FIXTURES, name, ...parts);

export async function readHost(path: string): Promise<Map<string, HostTensor>> {
  return new Map((await readSafetensors(path)).tensors);
}

export function toTensors(host: ReadonlyMap<string, HostTensor>, backend: Backend, file = '<fixture>'): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, v] of host) out.set(k, fromHostTensor(v, backend, { file, key: k }));
  return out;
}

/** Loads `base/model.safetensors` of a case into `model` (strict: every key must match). */
export async function loadBase(model: Module, name: string, backend: Backend): Promise<void> {
  const file = fixturePath(name, 'base', 'model.safetensors');
  const values = toTensors(await readHost(file), backend, file);
  model.loadStateDict(values);
  for (const t of values.values()) t.dispose();
}

export interface Fixture {
  readonly tensors: Map<string, HostTensor>;
  float(key: string): Float32Array;
  input(backend: Backend): Tensor;
}

export async function readFixture(name: string): Promise<Fixture> {
  const tensors = await readHost(fixturePath(name, 'tensors.safetensors'));
  return {
    tensors,
    float(key) {
      const t = tensors.get(key);
      if (!t || t.dtype !== 'F32') throw new Error(`fixture ${name}: no F32 tensor '${key}'`);
      return t.data as Float32Array;
    },
    input(backend) {
      const key = tensors.has('input.x') ? 'input.x' : 'input.ids';
      return fromHostTensor(tensors.get(key)!, backend, { file: name, key });
    },
  };
}

export async function values(t: Tensor): Promise<Float32Array> {
  return t.float32();
}
