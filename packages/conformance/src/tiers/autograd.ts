/**
 * Tier: core autograd on this backend — analytic gradients of every differentiable op vs finite
 * differences, and no leaked buffers across forward/backward loops.
 */
import { backward, Linear, ops, Random, type Tensor, tensor, tidy } from '@dorajs/core';
import type { ConformanceCase, ConformanceTier } from '../types.js';
import { checkpointCases } from './checkpoint.js';
import { gradCheck } from './grad-check.js';

type Case = { id: string; shapes: number[][]; fn: (t: Tensor[]) => Tensor; positive?: boolean };

const CASES: Case[] = [
  { id: 'add-broadcast', shapes: [[3, 4], [4]], fn: ([a, b]) => ops.add(a!, b!) },
  {
    id: 'sub-broadcast',
    shapes: [
      [2, 3, 4],
      [3, 1],
    ],
    fn: ([a, b]) => ops.sub(a!, b!),
  },
  {
    id: 'mul-broadcast',
    shapes: [
      [3, 4],
      [1, 4],
    ],
    fn: ([a, b]) => ops.mul(a!, b!),
  },
  {
    id: 'div',
    shapes: [
      [3, 4],
      [3, 4],
    ],
    fn: ([a, b]) => ops.div(a!, b!),
    positive: true,
  },
  {
    id: 'matmul',
    shapes: [
      [3, 5],
      [5, 4],
    ],
    fn: ([a, b]) => ops.matmul(a!, b!),
  },
  {
    id: 'matmul-tA',
    shapes: [
      [5, 3],
      [5, 4],
    ],
    fn: ([a, b]) => ops.matmul(a!, b!, { transposeA: true }),
  },
  {
    id: 'matmul-tB',
    shapes: [
      [3, 5],
      [4, 5],
    ],
    fn: ([a, b]) => ops.matmul(a!, b!, { transposeB: true }),
  },
  {
    id: 'matmul-tAtB',
    shapes: [
      [5, 3],
      [4, 5],
    ],
    fn: ([a, b]) => ops.matmul(a!, b!, { transposeA: true, transposeB: true }),
  },
  {
    id: 'matmul-batched-broadcast',
    shapes: [
      [2, 1, 3, 5],
      [3, 5, 2],
    ],
    fn: ([a, b]) => ops.matmul(a!, b!),
  },
  { id: 'linear', shapes: [[2, 3, 5], [4, 5], [4]], fn: ([x, w, b]) => ops.linear(x!, w!, b!) },
  { id: 'exp', shapes: [[7]], fn: ([a]) => ops.exp(a!) },
  { id: 'log', shapes: [[7]], fn: ([a]) => ops.log(a!), positive: true },
  { id: 'sqrt', shapes: [[7]], fn: ([a]) => ops.sqrt(a!), positive: true },
  { id: 'rsqrt', shapes: [[7]], fn: ([a]) => ops.rsqrt(a!), positive: true },
  { id: 'tanh', shapes: [[7]], fn: ([a]) => ops.tanh(a!) },
  { id: 'sigmoid', shapes: [[7]], fn: ([a]) => ops.sigmoid(a!) },
  { id: 'silu', shapes: [[7]], fn: ([a]) => ops.silu(a!) },
  { id: 'gelu', shapes: [[7]], fn: ([a]) => ops.gelu(a!) },
  { id: 'gelu-tanh', shapes: [[7]], fn: ([a]) => ops.geluTanh(a!) },
  { id: 'relu', shapes: [[7]], fn: ([a]) => ops.relu(a!) },
  { id: 'square', shapes: [[7]], fn: ([a]) => ops.square(a!) },
  { id: 'sum-axes', shapes: [[2, 3, 4]], fn: ([a]) => ops.sum(a!, [0, 2]) },
  { id: 'mean-keep', shapes: [[2, 3, 4]], fn: ([a]) => ops.mean(a!, -1, true) },
  { id: 'softmax', shapes: [[3, 6]], fn: ([a]) => ops.softmax(a!) },
  { id: 'log-softmax', shapes: [[3, 6]], fn: ([a]) => ops.logSoftmax(a!) },
  { id: 'transpose', shapes: [[2, 3, 4]], fn: ([a]) => ops.transpose(a!, [2, 0, 1]) },
  { id: 'slice', shapes: [[4, 5]], fn: ([a]) => ops.slice(a!, [1, 2], [2, 3]) },
  {
    id: 'concat',
    shapes: [
      [2, 3],
      [2, 2],
    ],
    fn: ([a, b]) => ops.concat([a!, b!], 1),
  },
  { id: 'layer-norm', shapes: [[3, 6], [6], [6]], fn: ([x, w, b]) => ops.layerNorm(x!, w!, b!, 1e-5) },
  { id: 'rms-norm', shapes: [[3, 6], [6]], fn: ([x, w]) => ops.rmsNorm(x!, w!, 1e-6) },
  {
    id: 'conv2d',
    shapes: [
      [2, 4, 5, 5],
      [6, 2, 3, 3],
    ],
    fn: ([x, w]) => ops.conv2d(x!, w!, null, { stride: 2, padding: 1, dilation: 1, groups: 2 }),
  },
  {
    id: 'conv2d-dilated',
    shapes: [
      [1, 2, 6, 6],
      [3, 2, 2, 2],
    ],
    fn: ([x, w]) => ops.conv2d(x!, w!, null, { padding: 1, dilation: 2 }),
  },
  {
    id: 'conv1d',
    shapes: [
      [2, 4, 7],
      [6, 2, 3],
    ],
    fn: ([x, w]) => ops.conv1d(x!, w!, null, { stride: 2, padding: 1, dilation: 1, groups: 2 }),
  },
  {
    id: 'conv3d',
    shapes: [
      [1, 2, 4, 4, 3],
      [3, 2, 2, 3, 2],
    ],
    fn: ([x, w]) => ops.conv3d(x!, w!, null, { stride: [2, 1, 1], padding: [1, 1, 0], dilation: [1, 1, 2] }),
  },
  { id: 'dora-compose', shapes: [[3, 4], [3, 4], [4], [4]], fn: ([b, l, g, bias]) => ops.doraCompose(b!, l!, g!, 0.5, bias!) },
  // One operand a constant (no gradient): the op saves only what the other's gradient reads.
  { id: 'mul-const-right', shapes: [[3, 4]], fn: ([a]) => ops.mul(a!, constant(a!, [1, 4])) },
  { id: 'mul-const-left', shapes: [[3, 4]], fn: ([b]) => ops.mul(constant(b!, [3, 1]), b!) },
  { id: 'div-const-denominator', shapes: [[3, 4]], fn: ([a]) => ops.div(a!, constant(a!, [3, 4], true)), positive: true },
  { id: 'div-const-numerator', shapes: [[3, 4]], fn: ([b]) => ops.div(constant(b!, [3, 4]), b!), positive: true },
  { id: 'matmul-const-b', shapes: [[3, 5]], fn: ([a]) => ops.matmul(a!, constant(a!, [4, 5]), { transposeB: true }) },
  { id: 'matmul-const-a', shapes: [[5, 4]], fn: ([b]) => ops.matmul(constant(b!, [5, 3]), b!, { transposeA: true }) },
  {
    id: 'dora-compose-const-g',
    shapes: [
      [3, 4],
      [3, 4],
    ],
    fn: ([b, l]) => ops.doraCompose(b!, l!, constant(b!, [4]), 0.5, null),
  },
];

/** A fixed tensor (no gradient) on `like`'s backend, values in [0.5, 1.5] (positive) or [-1.5, 1.5]. */
function constant(like: Tensor, shape: number[], positive = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new Random(n * 31 + shape.length);
  return tensor(positive ? rng.fillUniform(n, 0.5, 1.5) : rng.fillUniform(n, -1.5, 1.5), shape, { backend: like.backend });
}

/** float32 central differences with h = 1e-2 land near 1e-5 of the largest gradient; this allows 2e-3. */
const FD_TOLERANCE = 2e-3;

export const autogradTier: ConformanceTier = {
  id: 'autograd',
  title: 'core autograd on this backend: analytic gradients vs finite differences, no leaks',
  cases: [
    ...CASES.map(
      (c): ConformanceCase => ({
        id: `autograd/${c.id}`,
        title: `gradients of ${c.id} match finite differences`,
        async run(ctx) {
          const rng = new Random(c.id.length * 7919);
          const inputs = c.shapes.map((shape) => {
            const n = shape.reduce((a, b) => a * b, 1);
            return { values: c.positive ? rng.fillUniform(n, 0.5, 2) : rng.fillUniform(n, -1.5, 1.5), shape };
          });
          const err = await gradCheck(ctx.backend, c.fn, inputs, { seed: 3, probes: 6 });
          if (!(err <= FD_TOLERANCE)) throw new Error(`autograd/${c.id}: worst |fd − analytic| / max|grad| = ${err} > ${FD_TOLERANCE}`);
        },
      }),
    ),
    {
      id: 'autograd/saves-only-what-backward-reads',
      title: 'a scope frees intermediates no gradient reads: x·c keeps c, sigmoid keeps y, doraCompose keeps g and base + s·lora',
      async run(ctx) {
        const backend = ctx.backend;
        const rng = new Random(17);
        const param = (shape: number[]) =>
          tensor(rng.fillUniform(shape[0]! * (shape[1] ?? 1), -1, 1), shape, { backend, requiresGrad: true });
        const [p, q, g] = [param([3, 4]), param([3, 4]), param([4])];
        const c = tensor(rng.fillUniform(4, -1, 1), [4], { backend });
        // Each forward makes one intermediate (p·2 or q·2) inside the scope; `extra` buffers outlive it.
        const cases: [string, () => Tensor, number][] = [
          ['mul by a constant keeps the constant, not x', () => ops.mul(ops.mulScalar(p, 2), c), 1],
          ['sigmoid keeps its output, not its input', () => ops.sigmoid(ops.mulScalar(p, 2)), 1],
          ['matmul by a constant keeps the constant', () => ops.matmul(ops.mulScalar(p, 2), ops.reshape(c, [4, 1])), 1],
          [
            'doraCompose keeps base + s·lora, not base and lora',
            () => ops.doraCompose(ops.mulScalar(p, 2), ops.mulScalar(q, 2), g, 0.5, null),
            2,
          ],
        ];
        for (const [what, forward, extra] of cases) {
          const start = backend.liveBuffers();
          const y = tidy(forward);
          const live = backend.liveBuffers() - start;
          tidy(() => backward(ops.sum(y)));
          y.dispose();
          if (live !== extra)
            throw new Error(`autograd/saves-only-what-backward-reads: ${what}: ${live} buffers outlive the scope, want ${extra}`);
        }
        for (const t of [p, q, g, c]) {
          t.grad?.dispose();
          t.dispose();
        }
      },
    },
    {
      id: 'autograd/no-leak',
      title: 'forward/backward loops (and forwards never differentiated) leave no live buffers',
      async run(ctx) {
        const backend = ctx.backend;
        const lin = new Linear(6, 4, { backend });
        const x = tensor(new Random(5).fillUniform(12, -1, 1), [2, 6], { backend });
        const start = backend.liveBuffers();
        for (let i = 0; i < 5; i++) {
          tidy(() => backward(ops.sum(ops.gelu(lin.forward(x)))));
          for (const p of lin.parameters()) {
            p.grad?.dispose();
            p.grad = null;
          }
          tidy(() => {
            ops.softmax(lin.forward(x));
          });
        }
        const end = backend.liveBuffers();
        x.dispose();
        lin.dispose();
        if (end !== start) throw new Error(`autograd/no-leak: ${end - start} buffers leaked over 5 steps`);
      },
    },
    ...checkpointCases,
  ],
};
