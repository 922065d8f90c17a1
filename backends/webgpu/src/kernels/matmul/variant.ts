import type { KernelContext, MatmulVariant } from '../../context.js';
import { threadRows } from './tuning.js';

/** The program family for a shape: small K (LoRA's B·(A·x)), GEMV for one row, tiled otherwise. */
export function chooseMatmulVariant(M: number, K: number): Exclude<MatmulVariant, 'auto'> {
  if (K <= 32) return 'smallK';
  if (M === 1) return 'gemv';
  return 'tiled';
}

/** The variant a matmul runs: the forced one (`matmulVariant` option) or the shape's, where the device can. */
export function matmulVariantFor(ctx: KernelContext, M: number, K: number): Exclude<MatmulVariant, 'auto'> {
  let variant: MatmulVariant = ctx.options.matmulVariant;
  if (variant === 'auto') variant = chooseMatmulVariant(M, K);
  if (variant === 'gemv' && M !== 1) variant = 'smallK';
  if (variant === 'tiled' && threadRows(ctx.rt.limits) === 0) variant = 'smallK';
  return variant;
}
