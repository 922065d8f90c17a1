/**
 * A DoRA Linear forward written with Backend kernels only (weightNorm, matmuls, doraCompose), as core's
 * layer computes it in eval mode: y = bias + m/‖W + s·B·A‖ ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ). Used by the fixture
 * test and bundled into the browser page, so it depends on nothing but the contract.
 */
import type { Backend, TensorInfo } from '@dorajs/core';

export interface DoraLinearWeights<H> {
  readonly w: TensorInfo<H>;
  readonly a: TensorInfo<H>;
  readonly b: TensorInfo<H>;
  readonly m: TensorInfo<H>;
  readonly bias: TensorInfo<H> | null;
  readonly scale: number;
}

export function doraLinear<H>(be: Backend<H>, x: TensorInfo<H>, p: DoraLinearWeights<H>, temps: H[]): TensorInfo<H> {
  const [out, inn] = p.w.shape as [number, number];
  const r = p.a.shape[0]!;
  const lead = x.shape.slice(0, -1);
  const t = (data: H, shape: readonly number[]): TensorInfo<H> => {
    temps.push(data);
    return { data, shape, dtype: 'float32' };
  };
  if (x.shape[x.shape.length - 1] !== inn) throw new Error(`x [${x.shape.join(', ')}] does not fit W [${out}, ${inn}]`);
  const norm = t(be.weightNorm!(p.w, p.a, p.b, p.scale, {}), [out]);
  const g = t(be.binary('div', p.m, norm, [out]), [out]);
  const base = t(be.matmul(x, p.w, { transposeB: true }, [...lead, out]), [...lead, out]);
  const ax = t(be.matmul(x, p.a, { transposeB: true }, [...lead, r]), [...lead, r]);
  const lora = t(be.matmul(ax, p.b, { transposeB: true }, [...lead, out]), [...lead, out]);
  return t(be.doraCompose!(base, lora, g, p.scale, p.bias), [...lead, out]);
}

/**
 * The same forward through the fused kernels core asks for (`matmulWeightNorm` where the backend shares
 * W's read between the base GEMV and the norm, else `matmulCompose`), as core's `doraLinear` does.
 */
export function doraLinearFused<H>(be: Backend<H>, x: TensorInfo<H>, p: DoraLinearWeights<H>, temps: H[]): TensorInfo<H> {
  const [out] = p.w.shape as [number, number];
  const r = p.a.shape[0]!;
  const rows = x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const x2: TensorInfo<H> = { ...x, shape: [rows, x.shape[x.shape.length - 1]!] };
  const t = (data: H, shape: readonly number[]): TensorInfo<H> => {
    temps.push(data);
    return { data, shape, dtype: 'float32' };
  };
  const ax = t(be.matmul(x2, p.a, { transposeB: true }, [rows, r]), [rows, r]);
  const lora = t(be.matmul(ax, p.b, { transposeB: true }, [rows, out]), [rows, out]);
  const shared = be.matmulWeightNorm!(x2, p.w, p.a, p.b, p.scale, {});
  if (shared) {
    const base = t(shared.base, [rows, out]);
    const g = t(be.binary('div', p.m, t(shared.norm, [out]), [out]), [out]);
    return t(be.doraCompose!(base, lora, g, p.scale, p.bias), [...x.shape.slice(0, -1), out]);
  }
  const g = t(be.binary('div', p.m, t(be.weightNorm!(p.w, p.a, p.b, p.scale, {}), [out]), [out]), [out]);
  const fused = be.matmulCompose!(x2, p.w, lora, g, p.scale, p.bias, {});
  t(fused.base, [rows, out]);
  return t(fused.y, [...x.shape.slice(0, -1), out]);
}
