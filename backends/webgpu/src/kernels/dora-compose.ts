/**
 * DoRA's output composition y = bias + g ⊙ (base + s·lora), one pass instead of four elementwise ops. (Core
 * asks for the base matmul with this composition in its epilogue through `matmulCompose` when it can.)
 */
import { ShapeError } from '@dorajs/core';
import type { GpuTensor, KernelContext } from '../context.js';
import type { Program } from '../runtime.js';
import { grid } from '../shapes.js';
import { bindInput, bindOutput, ELEMENTWISE_WORKGROUP as WG, linearMain, loadF32, storageType } from '../wgsl/common.js';
import type { TensorArg } from './elementwise.js';

export function doraCompose(
  ctx: KernelContext,
  base: TensorArg,
  lora: TensorArg,
  g: TensorArg,
  scale: number,
  bias: TensorArg | null,
): GpuTensor {
  const out = base.shape[base.shape.length - 1] ?? 1;
  const same = base.shape.length === lora.shape.length && base.shape.every((d, i) => d === lora.shape[i]);
  if (!same || g.t.size !== out || (bias && bias.t.size !== out)) {
    throw new ShapeError(
      `webgpu doraCompose: base [${base.shape.join(', ')}], lora [${lora.shape.join(', ')}], g [${g.shape.join(', ')}]` +
        `${bias ? `, bias [${bias.shape.join(', ')}]` : ''} must share the last axis ${out}`,
    );
  }
  const hasBias = bias !== null;
  const program: Program = {
    key: `dora-compose:${base.t.dtype}:${lora.t.dtype}:${g.t.dtype}:${hasBias ? bias.t.dtype : 'none'}`,
    name: 'doraCompose',
    uniforms: {
      scalars: [
        ['n', 'u32'],
        ['cols', 'u32'],
        ['scale', 'f32'],
      ],
      dims: 0,
    },
    outputs: 1,
    inputs: hasBias ? 4 : 3,
    source: () => `${bindOutput(1, 'y', 'f32')}
${bindInput(2, 'base', storageType(base.t.dtype))}
${bindInput(3, 'lora', storageType(lora.t.dtype))}
${bindInput(4, 'g', storageType(g.t.dtype))}
${hasBias ? bindInput(5, 'bias', storageType(bias.t.dtype)) : ''}
${linearMain(
  WG,
  `  if (index >= P.n) { return; }
  let col = index % P.cols;
  let v = ${loadF32('g', g.t.dtype, 'col')} * fma(P.scale, ${loadF32('lora', lora.t.dtype, 'index')}, ${loadF32('base', base.t.dtype, 'index')});
  y[index] = ${hasBias ? `${loadF32('bias', bias.t.dtype, 'col')} + v` : 'v'};`,
)}`,
  };
  const n = base.t.size;
  const y = ctx.alloc('float32', n);
  const inputs = [base.t.buf, lora.t.buf, g.t.buf];
  if (bias) inputs.push(bias.t.buf);
  ctx.rt.dispatch({
    program,
    outputs: [y.buf],
    inputs,
    scalars: { n, cols: out, scale },
    workgroups: grid(Math.ceil(n / WG), ctx.rt.limits.maxComputeWorkgroupsPerDimension),
  });
  return y;
}
