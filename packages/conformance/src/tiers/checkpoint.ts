/**
 * Cases of the autograd tier for gradient checkpointing: a checkpointed step (forward, loss, backward)
 * gives bit-identical results and gradients to the plain step, dropout included; a recompute that differs
 * (a planted bug) is caught; DoRA's detached norm is computed once per step; nothing leaks.
 */
import {
  backward,
  type Backend,
  checkpoint,
  Dropout,
  doraLinear,
  ops,
  Parameter,
  Random,
  reusedInRecompute,
  saveForRecompute,
  type Tensor,
  tensor,
  tidy,
} from '@dorajs/core';
import type { ConformanceCase } from '../types.js';

interface Block {
  w: Tensor; // frozen base weight [8, 6]
  a: Parameter;
  b: Parameter;
  m: Parameter;
  down: Parameter; // [6, 8], trainable
  drop: Dropout;
}

function makeBlock(backend: Backend, seed: number): Block {
  const rng = new Random(seed);
  const t = (shape: number[], lo = -1, hi = 1) =>
    tensor(
      rng.fillUniform(
        shape.reduce((x, y) => x * y, 1),
        lo,
        hi,
      ),
      shape,
      { backend },
    );
  const p = (shape: number[], lo = -1, hi = 1) => {
    const v = t(shape, lo, hi);
    const param = new Parameter(v);
    v.dispose();
    return param;
  };
  const drop = new Dropout(0.3, new Random(seed + 100));
  drop.train();
  return { w: t([8, 6]), a: p([2, 6]), b: p([8, 2]), m: p([8], 0.5, 1.5), down: p([6, 8]), drop };
}

/** x + down·dropout(gelu(DoRA(x))) — a residual block with a DoRA projection, dropout and a trainable matmul. */
function blockForward(k: Block, x: Tensor): Tensor {
  const h = ops.gelu(doraLinear(x, k.w, k.a, k.b, 0.5, null, { m: k.m }));
  return ops.add(x, ops.matmul(k.drop.forward(h), k.down, { transposeB: true }));
}

const params = (k: Block): Parameter[] => [k.a, k.b, k.m, k.down];

type Wrap = (k: Block, x: Tensor, index: number) => Tensor;

/** One step over 3 blocks; returns the loss and every parameter's gradient (bits), leaving nothing behind. */
async function step(backend: Backend, wrap: Wrap): Promise<{ loss: Float32Array; grads: Float32Array[]; rng: number[] }> {
  const blocks = [1, 2, 3].map((s) => makeBlock(backend, s * 11));
  const x0 = tensor(new Random(9).fillUniform(4 * 6, -1, 1), [4, 6], { backend });
  const loss = tidy(() => {
    let h = x0;
    blocks.forEach((k, i) => {
      h = wrap(k, h, i);
    });
    const l = ops.sum(ops.mul(h, h));
    backward(l);
    return l;
  });
  const out = {
    loss: await loss.float32(),
    grads: await Promise.all(blocks.flatMap((k) => params(k).map((p) => p.grad!.float32()))),
    rng: blocks[0]!.drop._random.getState(),
  };
  loss.dispose();
  x0.dispose();
  for (const k of blocks) {
    for (const t of [k.w, ...params(k)]) t.dispose();
  }
  return out;
}

/** Index of the first differing bit pattern, or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function sameBits(what: string, plain: Awaited<ReturnType<typeof step>>, other: Awaited<ReturnType<typeof step>>): string | null {
  if (firstDiff(plain.loss, other.loss) >= 0) return `${what}: loss ${other.loss[0]} vs ${plain.loss[0]}`;
  for (let i = 0; i < plain.grads.length; i++) {
    const at = firstDiff(plain.grads[i]!, other.grads[i]!);
    if (at >= 0) return `${what}: gradient ${i} differs at ${at}: ${other.grads[i]![at]} vs ${plain.grads[i]![at]}`;
  }
  return null;
}

export const checkpointCases: ConformanceCase[] = [
  {
    id: 'autograd/checkpoint-bit-identical',
    title: 'checkpoint(fn): loss and every gradient bit-identical to the plain step (dropout replayed); a different recompute is caught',
    async run(ctx) {
      const backend = ctx.backend;
      const plain = await step(backend, (k, x) => blockForward(k, x));
      const ckpt = await step(backend, (k, x) => checkpoint((xi) => blockForward(k, xi), [x]));
      const bad = sameBits('checkpointed step', plain, ckpt);
      if (bad) throw new Error(`autograd/checkpoint-bit-identical: ${bad}`);
      if (plain.rng.join() !== ckpt.rng.join())
        throw new Error('autograd/checkpoint-bit-identical: dropout generator left in another state');
      // Only some blocks checkpointed: still identical.
      const mixed = await step(backend, (k, x, i) => (i === 1 ? blockForward(k, x) : checkpoint((xi) => blockForward(k, xi), [x])));
      const badMixed = sameBits('mixed step', plain, mixed);
      if (badMixed) throw new Error(`autograd/checkpoint-bit-identical: ${badMixed}`);
      // Planted bugs: a recompute on a different input, and a recompute drawing a fresh dropout mask.
      const shifted = await step(backend, (k, x) => {
        let calls = 0;
        return checkpoint((xi) => blockForward(k, calls++ === 0 ? xi : ops.mulScalar(xi, 1.001)), [x]);
      });
      if (!sameBits('planted', plain, shifted))
        throw new Error('autograd/checkpoint-bit-identical: a recompute on a different input went unnoticed');
      const redrawn = await step(backend, (k, x) => {
        let calls = 0;
        return checkpoint(
          (xi) => {
            if (calls++ > 0) k.drop._random.next(); // a draw the forward did not make: another mask
            return blockForward(k, xi);
          },
          [x],
        );
      });
      if (!sameBits('planted', plain, redrawn))
        throw new Error('autograd/checkpoint-bit-identical: a recompute with another dropout mask went unnoticed');
    },
  },
  {
    id: 'autograd/checkpoint-nested',
    title: "checkpoint(fn) nests (gradients as without it), and a recompute's temporaries are freed before its backward runs",
    async run(ctx) {
      const backend = ctx.backend;
      const rng = new Random(4);
      const param = (n: number) => {
        const v = tensor(rng.fillUniform(n, -1, 1), [n], { backend });
        const p = new Parameter(v);
        v.dispose();
        return p;
      };
      const [p, q] = [param(5), param(5)];
      const x = tensor(rng.fillUniform(5, -1, 1), [5], { backend });
      const temporaries: Tensor[] = [];
      let outerTemporaryFreed: boolean | null = null;
      const inner = (t: Tensor): Tensor => {
        // The last call is the inner recompute, inside the outer recompute's backward: by then the outer
        // recompute's scope (which made temporaries[1]) is closed.
        if (temporaries.length === 2) outerTemporaryFreed = temporaries[1]!.isDisposed;
        return ops.mul(ops.sigmoid(t), q);
      };
      const outer = (t: Tensor): Tensor => {
        const tmp = ops.mulScalar(ops.mul(t, p), 3);
        temporaries.push(tmp);
        return ops.add(t, checkpoint(inner, [tmp]));
      };
      const grads = async (f: (t: Tensor) => Tensor) => {
        tidy(() => {
          const y = f(x);
          backward(ops.sum(ops.mul(y, y)));
        });
        const out = [await p.grad!.float32(), await q.grad!.float32()];
        for (const t of [p, q]) {
          t.grad!.dispose();
          t.grad = null;
        }
        return out;
      };
      const plain = await grads((t) => ops.add(t, inner(ops.mulScalar(ops.mul(t, p), 3))));
      temporaries.length = 0;
      const nested = await grads((t) => checkpoint(outer, [t]));
      for (let i = 0; i < 2; i++) {
        const at = firstDiff(plain[i]!, nested[i]!);
        if (at >= 0) throw new Error(`autograd/checkpoint-nested: gradient ${i} differs at ${at}: ${nested[i]![at]} vs ${plain[i]![at]}`);
      }
      if (outerTemporaryFreed !== true)
        throw new Error(
          `autograd/checkpoint-nested: the outer recompute's temporary was ${outerTemporaryFreed === null ? 'never observed' : 'still alive'} during its backward`,
        );
      for (const t of [p, q, x]) t.dispose();
    },
  },
  {
    id: 'autograd/checkpoint-reuses-detached',
    title: "checkpoint(fn): DoRA's detached norm is computed once per step (forward), reused by the recompute unless its weights changed",
    async run(ctx) {
      const backend = ctx.backend;
      const k = makeBlock(backend, 5);
      k.drop = new Dropout(0);
      const x = tensor(new Random(2).fillUniform(4 * 6, -1, 1), [4, 6], { backend });
      // Counted through the memo API itself (backends differ in which kernel computes the norm).
      let computed = 0;
      const deps = ['test-norm', k.a];
      const fn = (xi: Tensor): Tensor => {
        let n = reusedInRecompute(deps);
        if (!n) {
          computed++;
          n = ops.mulScalar(k.a, 1);
          saveForRecompute(deps, n);
        }
        return ops.add(blockForward(k, xi), ops.sum(ops.mul(n, n)));
      };
      const start = backend.liveBuffers();
      tidy(() => backward(ops.sum(checkpoint(fn, [x]))));
      if (computed !== 1) throw new Error(`autograd/checkpoint-reuses-detached: computed ${computed} times in one step, want 1`);
      // A weight changed between forward and backward (version bump): the stale value is not reused.
      computed = 0;
      tidy(() => {
        const y = checkpoint(fn, [x]);
        k.a.assign(ops.mulScalar(k.a, 1));
        backward(ops.sum(y));
      });
      if (computed !== 2) throw new Error(`autograd/checkpoint-reuses-detached: after a weight change computed ${computed} times, want 2`);
      // The DoRA norm itself: one weightNorm kernel call per checkpointed step where the backend has one.
      const be = backend as Backend & { weightNorm?: (...args: unknown[]) => unknown };
      const original = be.weightNorm;
      if (original) {
        let calls = 0;
        be.weightNorm = (...args: unknown[]) => {
          calls++;
          return original.apply(backend, args);
        };
        try {
          tidy(() => backward(ops.sum(checkpoint((xi) => blockForward(k, xi), [x]))));
        } finally {
          be.weightNorm = original;
        }
        if (calls !== 1)
          throw new Error(`autograd/checkpoint-reuses-detached: ${calls} weightNorm calls in a checkpointed DoRA step, want 1`);
      }
      for (const p of params(k)) {
        p.grad?.dispose();
        p.grad = null;
      }
      const live = backend.liveBuffers() - start;
      x.dispose();
      for (const t of [k.w, ...params(k)]) t.dispose();
      if (live !== 0) throw new Error(`autograd/checkpoint-reuses-detached: ${live} buffers leaked`);
    },
  },
];
