/** Initial A and B for a fresh adapter (PEFT's `reset_lora_parameters`); variants add their own (DoRA: `init`). */
import { type Backend, defaultRandom, type LayerGeometry, quoted, type Random, type Tensor, tensor, zeros } from '@dorajs/core';
import type { InitLoraWeights } from '../config/lora-config.js';
import { LoraConfigError } from '../errors.js';

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** PyTorch's kaiming_uniform_(a=√5) ⇒ U(±1/√fan_in), fan_in = shape[1]·(kernel). */
function kaimingUniform(shape: readonly number[], random: Random, backend: Backend): Tensor {
  const bound = 1 / Math.sqrt(product(shape.slice(1)));
  return tensor(random.fillUniform(product(shape), -bound, bound), [...shape], { backend });
}

function normal(shape: readonly number[], std: number, random: Random, backend: Backend): Tensor {
  return tensor(random.fillNormal(product(shape), 0, std), [...shape], { backend });
}

export function initialAdapterWeights(
  geo: LayerGeometry,
  shapes: { a: readonly number[]; b: readonly number[] },
  r: number,
  init: InitLoraWeights | string,
  backend: Backend,
  random: Random = defaultRandom,
): { a: Tensor; b: Tensor } {
  if (init !== true && init !== false && init !== 'gaussian') {
    throw new LoraConfigError(`init_lora_weights ${quoted(init)} is not implemented by dorajs (supported: true, false, 'gaussian')`);
  }
  if (geo.kind === 'embedding') {
    // PEFT inverts the roles for embeddings: A = 0 and B ~ N(0, 1) so the adapter starts as a no-op.
    const a = init === false ? normal(shapes.a, 1, random, backend) : zeros([...shapes.a], { backend });
    return { a, b: normal(shapes.b, 1, random, backend) };
  }
  const a = init === 'gaussian' ? normal(shapes.a, 1 / r, random, backend) : kaimingUniform(shapes.a, random, backend);
  const b = init === false ? kaimingUniform(shapes.b, random, backend) : zeros([...shapes.b], { backend });
  return { a, b };
}
