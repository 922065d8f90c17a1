/**
 * PyTorch's clip_grad_norm_: one L2 norm over every gradient, and every gradient scaled by
 * max_norm / (norm + 1e-6) when that is below 1.
 */
import { keep, noGrad, ops, type Parameter, type Tensor, tidy } from '@dorajs/core';

/** The global L2 norm of the parameters' gradients, read back to the host (one scalar). */
export async function globalGradNorm(params: readonly Parameter[]): Promise<number> {
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) return 0;
  const squared = tidy(() =>
    noGrad(() => {
      let acc: Tensor | null = null;
      for (const g of grads) {
        const s = ops.sum(ops.mul(g, g));
        acc = acc ? ops.add(acc, s) : s;
      }
      return acc!;
    }),
  );
  try {
    return Math.sqrt((await squared.float32())[0]!);
  } finally {
    squared.dispose();
  }
}

/** Scales gradients in place so their global norm is at most `maxNorm`. Returns the norm before clipping. */
export async function clipGradNorm(params: readonly Parameter[], maxNorm: number): Promise<number> {
  const norm = await globalGradNorm(params);
  const coef = maxNorm / (norm + 1e-6);
  // A factor ≥ 1 is a no-op in PyTorch too (it clamps to 1); skipping it saves a pass.
  if (coef < 1) {
    noGrad(() => {
      for (const p of params) {
        const g = p.grad;
        if (!g) continue;
        // Gradients belong to their parameter, not to any enclosing tidy scope.
        p.grad = keep(ops.mulScalar(g, coef));
        g.dispose();
      }
    });
  }
  return norm;
}
