/**
 * Gradient checkpointing (PyTorch's `torch.utils.checkpoint`, what transformers'
 * `gradient_checkpointing_enable()` wraps around each decoder layer): `checkpoint(fn, inputs)` runs fn
 * and keeps only its inputs and output; backward runs fn again with autograd on and backpropagates the
 * incoming gradient through that recomputed graph. Memory for a stack of N layers drops from N layers of
 * saved activations to N layer inputs plus one layer's activations, for one extra forward.
 *
 * Exactness: the forward runs fn exactly as without checkpointing (autograd recording on, so every op
 * picks the same kernel), then drops the graph; the recompute runs the same ops in the same order, and the
 * gradients it yields reach inputs and parameters in the order a plain backward would give them, so
 * results and gradients are bit-identical to the plain step. Random draws (dropout) inside fn replay:
 * every generator fn draws from is reset to the state it had before its first draw, then put back.
 *
 * Values fn computes without gradient and which the recompute would compute again identically (DoRA's
 * weight norm) can be handed over with `saveForRecompute` / `reusedInRecompute`: kept, tiny, from the
 * forward to the backward of the same step, checked against the identity and `version` of what they were
 * computed from.
 */
import { DoraError, ShapeError } from '../errors.js';
import { type Random, watchRandom } from '../random.js';
import { backward, GradNode } from './autograd.js';
import { type DepsKey, depsKey, sameDeps } from './deps-key.js';
import { isGradEnabled, tidy, withGrad } from './scope.js';
import { shapeStr, sameShape } from './shape.js';
import { Tensor } from './tensor.js';

/** What a remembered value was computed from: objects by identity (and `version` when they have one), numbers, strings. */
export type RecomputeDeps = readonly unknown[];

interface Memo extends DepsKey {
  value: Tensor;
}

interface Context {
  readonly recompute: boolean;
  readonly memos: Memo[];
}

const contexts: Context[] = [];

/**
 * While a checkpointed function runs its forward: remembers `value` (a constant of the computation, no
 * gradient) for the recompute in backward. A no-op anywhere else. The caller keeps ownership of `value`.
 */
export function saveForRecompute(deps: RecomputeDeps, value: Tensor): void {
  const ctx = contexts[contexts.length - 1];
  if (!ctx || ctx.recompute) return;
  if (ctx.memos.some((m) => sameDeps(m, deps))) return;
  ctx.memos.push({ ...depsKey(deps), value: new Tensor(value.storage.retain(), value.shape, false) });
}

/**
 * While a checkpointed function is recomputed in backward: the value `saveForRecompute` remembered for
 * the same deps (same objects at the same versions) in its forward, as a new handle; null otherwise.
 */
export function reusedInRecompute(deps: RecomputeDeps): Tensor | null {
  const ctx = contexts[contexts.length - 1];
  if (!ctx?.recompute) return null;
  const hit = ctx.memos.find((m) => sameDeps(m, deps));
  return hit ? new Tensor(hit.value.storage.retain(), hit.value.shape) : null;
}

/** A new leaf on the same storage (tracked by the current scope), requiring grad like `t`. */
function detached(t: Tensor, requiresGrad: boolean): Tensor {
  t.assertAlive();
  const d = new Tensor(t.storage.retain(), t.shape);
  d.requiresGrad = requiresGrad;
  return d;
}

function runIn<T>(ctx: Context, fn: () => T): T {
  contexts.push(ctx);
  try {
    return fn();
  } finally {
    contexts.pop();
  }
}

/**
 * Runs `fn(...inputs)` keeping only `inputs` (and `fn`'s output) for backward; backward recomputes fn.
 * Parameters fn uses (captured, not passed) receive their gradients as without checkpointing. fn must be
 * deterministic given its inputs, the parameters and the random generators it draws from, and must not
 * change state another call would see (no cache writes). Without autograd recording (noGrad), plain `fn`.
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor {
  for (const t of inputs) t.assertAlive();
  if (!isGradEnabled()) return fn(...inputs);
  const wants = inputs.map((t) => t.requiresGrad);
  const ctx: Context = { recompute: false, memos: [] };
  const rngBefore = new Map<Random, number[]>();
  let requiresGrad = false;
  const prevWatcher = watchRandom(null);
  watchRandom((r) => {
    if (!rngBefore.has(r)) rngBefore.set(r, r.getState());
    prevWatcher?.(r);
  });
  let value: Tensor;
  try {
    value = tidy(() => {
      const out = runIn(ctx, () => fn(...inputs.map((t, i) => detached(t, wants[i]!))));
      if (!(out instanceof Tensor)) throw new DoraError('checkpoint(): the function must return one Tensor');
      out.assertAlive();
      requiresGrad = out.requiresGrad;
      // The output's values without its graph: the graph (and what it saved) goes with this scope.
      return new Tensor(out.storage.retain(), out.shape);
    });
  } catch (e) {
    for (const m of ctx.memos) m.value.dispose();
    throw e;
  } finally {
    watchRandom(prevWatcher);
  }
  if (!requiresGrad) {
    for (const m of ctx.memos) m.value.dispose();
    return value;
  }
  const n = inputs.length;
  const outShape = value.shape;
  const memoMeta = ctx.memos.map((m) => ({ deps: m.deps, versions: m.versions }));
  value.requiresGrad = true;
  // The node keeps the inputs and the remembered constants (its saved tensors, freed with the graph).
  value.node = new GradNode(
    'checkpoint',
    inputs.map((t) => (t.requiresGrad ? t : null)),
    [...inputs, ...ctx.memos.map((m) => m.value)],
    (grad, saved) => {
      const replay: Context = {
        recompute: true,
        memos: memoMeta.map((m, i) => ({ ...m, value: saved[n + i]! })),
      };
      const current = new Map<Random, number[]>();
      for (const [r, state] of rngBefore) {
        current.set(r, r.getState());
        r.setState(state);
      }
      try {
        return withGrad(() => {
          const leaves = saved.slice(0, n).map((t, i) => detached(t, wants[i]!));
          // The recompute's own scope frees what the graph does not save, as the forward's layer scope did.
          const y = tidy(() => runIn(replay, () => fn(...leaves)));
          if (!(y instanceof Tensor) || !sameShape(y.shape, outShape) || !y.requiresGrad) {
            throw new DoraError(
              `checkpoint(): the recomputed function returned ${y instanceof Tensor ? `${shapeStr(y.shape)}${y.requiresGrad ? '' : ' without a gradient'}` : 'no Tensor'}, the forward ${shapeStr(outShape)} (fn must be deterministic)`,
            );
          }
          backward(y, { gradient: grad });
          return leaves.map((leaf, i) => {
            if (!wants[i]) return null;
            const g = leaf.grad;
            leaf.grad = null;
            if (g && !sameShape(g.shape, leaf.shape))
              throw new ShapeError(`checkpoint(): gradient ${shapeStr(g.shape)} for input ${shapeStr(leaf.shape)}`);
            return g;
          });
        });
      } finally {
        for (const [r, state] of current) r.setState(state);
      }
    },
  );
  for (const m of ctx.memos) m.value.dispose();
  return value;
}
