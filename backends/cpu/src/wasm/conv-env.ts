import type { AnyTypedArray } from '@dorajs/core';
import { type ConvEnv, col2im as jsCol2im, im2col as jsIm2col } from '../kernels/conv2d.js';
import { gemm as jsGemm } from '../kernels/gemm.js';
import type { CpuInfo } from '../validation.js';
import type { WasmKernels } from './kernels.js';

/**
 * The conv kernels' GEMM and im2col buffers on the wasm heap: operands are recognised by their arrays
 * (the inputs, the output and the scratch handed out here), anything else runs the typed-array GEMM.
 */
export function wasmConvEnv(wasm: WasmKernels, arrays: readonly [CpuInfo | AnyTypedArray, AnyTypedArray | number][]): ConvEnv {
  const bases = new Map<AnyTypedArray, number>();
  for (const [handle, second] of arrays) {
    if (typeof second === 'number') {
      if (second) bases.set(handle as AnyTypedArray, second);
    } else if ((handle as CpuInfo).data.ptr) bases.set(second, (handle as CpuInfo).data.ptr);
  }
  const heap = wasm.runtime.heap;
  return {
    gemm: (m, n, k, a, b, c, cOffset, ldc, accumulate) => {
      const pa = bases.get(a.data);
      const pb = bases.get(b.data);
      const pc = bases.get(c);
      if (pa === undefined || pb === undefined || pc === undefined) return jsGemm(m, n, k, a, b, c, cOffset, ldc, accumulate);
      wasm.gemmStrided(
        m,
        n,
        k,
        pa + a.offset * 4,
        a.rowStride,
        a.colStride,
        pb + b.offset * 4,
        b.rowStride,
        b.colStride,
        pc + cOffset * 4,
        ldc,
        accumulate,
      );
    },
    im2col: (x, xOffset, g, cols) => {
      const px = bases.get(x);
      const pc = bases.get(cols);
      if (px === undefined || pc === undefined) return jsIm2col(x, xOffset, g, cols);
      wasm.im2col(px + xOffset * 4, pc, g);
    },
    col2im: (cols, g, dx, dxOffset) => {
      const pc = bases.get(cols);
      const px = bases.get(dx);
      if (px === undefined || pc === undefined) return jsCol2im(cols, g, dx, dxOffset);
      wasm.col2im(pc, px + dxOffset * 4, g);
    },
    scratch: (n) => {
      const ptr = n > 0 ? heap.alloc(n * 4) : null;
      if (ptr === null) return new Float32Array(n);
      const view = new Float32Array(wasm.runtime.buffer, ptr, n);
      bases.set(view, ptr);
      return view;
    },
    free: (view) => {
      const ptr = bases.get(view);
      if (ptr !== undefined) heap.free(ptr, view.length * 4);
    },
  };
}
