/**
 * Finite-difference gradient checks in float32: central differences on a random linear functional of the
 * output, L = Σ f(x)·R, compared with autograd's dL/dx.
 */
import { backward, type Backend, noGrad, ops, Random, type Tensor, tensor, tidy } from '@dorajs/core';

export interface GradCheckResult {
  readonly maxAbsError: number;
  readonly maxAbsGrad: number;
}

/**
 * `fn` maps the inputs to one output tensor. Each float input gets a gradient checked at up to `probes`
 * random positions. Returns the worst error relative to the largest gradient magnitude.
 */
export async function gradCheck(
  backend: Backend,
  fn: (inputs: Tensor[]) => Tensor,
  inputValues: { values: Float32Array; shape: number[] }[],
  options: { seed?: number; probes?: number; h?: number } = {},
): Promise<number> {
  const rng = new Random(options.seed ?? 1);
  const h = options.h ?? 1e-2;
  const inputs = inputValues.map((v) => tensor(v.values, v.shape, { backend, requiresGrad: true }));
  const out0 = tidy(() => fn(inputs));
  const rValues = rng.fillUniform(out0.size, -1, 1);
  const r = tensor(rValues, out0.shape, { backend });
  out0.dispose();
  // The scope frees the intermediates; the graph keeps what backward needs.
  const loss = tidy(() => ops.sum(ops.mul(fn(inputs), r)));
  backward(loss);
  const lossAt = async (vals: Float32Array[]): Promise<number> => {
    const t = noGrad(() =>
      tidy(() => {
        const ins = vals.map((v, i) => tensor(v, inputValues[i]!.shape, { backend }));
        return ops.sum(ops.mul(fn(ins), r));
      }),
    );
    const v = (await t.float32())[0]!;
    t.dispose();
    return v;
  };
  let worst = 0;
  for (let i = 0; i < inputs.length; i++) {
    const grad = await inputs[i]!.grad!.float32();
    const maxG = grad.reduce((m, g) => Math.max(m, Math.abs(g)), 1e-6);
    const n = inputValues[i]!.values.length;
    const probes = Math.min(n, options.probes ?? 8);
    for (let p = 0; p < probes; p++) {
      const j = probes === n ? p : Math.floor(rng.next() * n);
      const plus = inputValues.map((v) => v.values.slice());
      const minus = inputValues.map((v) => v.values.slice());
      plus[i]![j]! += h;
      minus[i]![j]! -= h;
      const fd = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - grad[j]!) / maxG);
    }
  }
  loss.dispose();
  r.dispose();
  for (const t of inputs) t.dispose();
  return worst;
}
