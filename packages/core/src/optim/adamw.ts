/**
 * AdamW with PyTorch's semantics (torch.optim.AdamW, non-amsgrad): decoupled weight decay applied as
 * p ← p·(1 − lr·wd) before the Adam step, bias-corrected moments, eps added after the square root of the
 * corrected second moment.
 */
import { ConfigError } from '../errors.js';
import { add, affine, div, mul, mulScalar, sqrt, sub } from '../ops/elementwise.js';
import { noGrad, tidy, keep } from '../tensor/scope.js';
import { full, type Parameter, type Tensor } from '../tensor/tensor.js';

export interface AdamWOptions {
  readonly lr?: number;
  readonly betas?: readonly [number, number];
  readonly eps?: number;
  readonly weightDecay?: number;
}

export interface AdamWState {
  step: number;
  /** Per parameter: first and second moments (absent before the first step). */
  moments: Map<Parameter, { m: Tensor; v: Tensor }>;
}

export class AdamW {
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly state: AdamWState = { step: 0, moments: new Map() };

  constructor(
    readonly params: readonly Parameter[],
    options: AdamWOptions = {},
  ) {
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    if (!(this.lr >= 0) || !(this.eps >= 0) || this.betas.some((b) => !(b >= 0 && b < 1))) {
      throw new ConfigError(`AdamW: invalid hyper-parameters lr=${this.lr} betas=${this.betas.join(',')} eps=${this.eps}`);
    }
  }

  /** One update from each parameter's `.grad` (parameters without a gradient are skipped, as in PyTorch). */
  step(): void {
    const [b1, b2] = this.betas;
    this.state.step++;
    const t = this.state.step;
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    noGrad(() => {
      for (const p of this.params) {
        const g = p.grad;
        if (!g) continue;
        tidy(() => {
          let st = this.state.moments.get(p);
          if (!st) {
            st = { m: keep(full(p.shape, 0, { backend: p.backend })), v: keep(full(p.shape, 0, { backend: p.backend })) };
            this.state.moments.set(p, st);
          }
          // PyTorch: p *= 1 − lr·wd; m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²
          const decayed = this.weightDecay ? mulScalar(p, 1 - this.lr * this.weightDecay) : p;
          const m = keep(add(mulScalar(st.m, b1), mulScalar(g, 1 - b1)));
          const v = keep(add(mulScalar(st.v, b2), mulScalar(mul(g, g), 1 - b2)));
          st.m.dispose();
          st.v.dispose();
          st.m = m;
          st.v = v;
          // denom = √v / √bc2 + eps; p −= (lr / bc1) · m / denom
          const denom = affine(sqrt(v), 1 / Math.sqrt(bc2), this.eps);
          const next = sub(decayed, mulScalar(div(m, denom), this.lr / bc1));
          p.assign(next);
        });
      }
    });
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Releases the moment buffers. */
  dispose(): void {
    for (const { m, v } of this.state.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.state.moments.clear();
  }
}
