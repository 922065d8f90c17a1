/**
 * The GEMM micro-kernel as an asm.js module. asm.js is plain JavaScript whose semantics are identical
 * whether or not the engine validates it; V8 and SpiderMonkey that do validate it compile it ahead of
 * time as WebAssembly: no type guards, no map checks, and a heap bounds check of two instructions instead
 * of the ~6 a typed-array index costs in optimised JavaScript. That is worth ~1.5× here over the same loop
 * as ordinary JavaScript. An engine that does not validate it, or a bundler that rewrites it (dropping
 * 'use asm', turning 0.0 into 0), just runs it as normal JS.
 *
 * Keep the body asm.js-valid: parameter coercions first, then `var` declarations with literal
 * initialisers (0.0 marks a double), byte offsets shifted by 3 into the Float64Array heap, every int
 * expression re-coerced with `| 0`. The unit tests check that the compiled output still validates.
 */

export interface MicroKernel {
  /**
   * The 4×2 register block: reads a 4×kc panel of A at byte offset `pa` and a kc×2 panel of B at `pb`
   * (both k-major, float64) and stores the 8 sums at byte offset `pc`, rows `ldc` bytes apart.
   */
  kernel(kc: number, pa: number, pb: number, pc: number, ldc: number): void;
  /**
   * Every 4×2 tile of an mc×nc block (mc a multiple of 4, nc of 2): A panels from `pa`, B panels from `pb`,
   * results stored into the C block at `pc` with rows `ldc` bytes apart. One call per block keeps the
   * JavaScript↔asm.js transitions out of the tile loop, which matters when kc (the rank, for LoRA) is small.
   */
  macro(mc: number, nc: number, kc: number, pa: number, pb: number, pc: number, ldc: number): void;
}

/*
 * Why 4×2 and not 4×4: x86-64 code gets 16 float registers. A 4×4 block needs 16 accumulators plus the 8
 * loaded values, so V8 spills half the accumulators to the stack and every step pays a load and a store
 * for each; 4×2 keeps its 8 accumulators, 4 + 2 operands and a temporary in registers. Measured on the
 * 2-core reference machine, interleaved runs: 4×2 ~5.1 GFLOP/s at 1024³ against 4×4 ~4.5 (3×3 was close to 4×2).
 */
/* eslint-disable no-var */
export function MicroKernelModule(stdlib: typeof globalThis, _foreign: unknown, heap: ArrayBuffer): MicroKernel {
  'use asm';
  var H = new stdlib.Float64Array(heap);
  var imul = stdlib.Math.imul;
  function kernel(kc: number, pa: number, pb: number, pc: number, ldc: number): void {
    kc = kc | 0;
    pa = pa | 0;
    pb = pb | 0;
    pc = pc | 0;
    ldc = ldc | 0;
    var c00 = 0.0,
      c01 = 0.0,
      c10 = 0.0,
      c11 = 0.0,
      c20 = 0.0,
      c21 = 0.0,
      c30 = 0.0,
      c31 = 0.0;
    var a0 = 0.0,
      a1 = 0.0,
      a2 = 0.0,
      a3 = 0.0,
      b0 = 0.0,
      b1 = 0.0;
    var end = 0;
    end = (pa + imul(kc, 32)) | 0;
    while ((pa | 0) < (end | 0)) {
      a0 = +H[pa >> 3]!;
      a1 = +H[(pa + 8) >> 3]!;
      a2 = +H[(pa + 16) >> 3]!;
      a3 = +H[(pa + 24) >> 3]!;
      b0 = +H[pb >> 3]!;
      b1 = +H[(pb + 8) >> 3]!;
      c00 = c00 + a0 * b0;
      c01 = c01 + a0 * b1;
      c10 = c10 + a1 * b0;
      c11 = c11 + a1 * b1;
      c20 = c20 + a2 * b0;
      c21 = c21 + a2 * b1;
      c30 = c30 + a3 * b0;
      c31 = c31 + a3 * b1;
      pa = (pa + 32) | 0;
      pb = (pb + 16) | 0;
    }
    H[pc >> 3] = c00;
    H[(pc + 8) >> 3] = c01;
    pc = (pc + ldc) | 0;
    H[pc >> 3] = c10;
    H[(pc + 8) >> 3] = c11;
    pc = (pc + ldc) | 0;
    H[pc >> 3] = c20;
    H[(pc + 8) >> 3] = c21;
    pc = (pc + ldc) | 0;
    H[pc >> 3] = c30;
    H[(pc + 8) >> 3] = c31;
  }
  function macro(mc: number, nc: number, kc: number, pa: number, pb: number, pc: number, ldc: number): void {
    mc = mc | 0;
    nc = nc | 0;
    kc = kc | 0;
    pa = pa | 0;
    pb = pb | 0;
    pc = pc | 0;
    ldc = ldc | 0;
    var aPanel = 0,
      bPanel = 0,
      ir = 0,
      jr = 0,
      b = 0,
      a = 0,
      c = 0;
    aPanel = imul(kc, 32);
    bPanel = imul(kc, 16);
    for (jr = 0; (jr | 0) < (nc | 0); jr = (jr + 2) | 0) {
      b = (pb + imul(jr >> 1, bPanel)) | 0;
      a = pa;
      c = (pc + (jr << 3)) | 0;
      for (ir = 0; (ir | 0) < (mc | 0); ir = (ir + 4) | 0) {
        kernel(kc, a, b, c, ldc);
        a = (a + aPanel) | 0;
        c = (c + (ldc << 2)) | 0;
      }
    }
  }
  return { kernel: kernel, macro: macro };
}
