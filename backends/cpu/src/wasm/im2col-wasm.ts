/**
 * The data movement around conv2d's GEMMs, emitted as WebAssembly: im2col (input planes → the column
 * matrix the forward and filter-gradient GEMMs read) and col2im (its adjoint, folding the input-gradient
 * GEMM's columns back into dx). Same element order and arithmetic as the typed-array versions in
 * kernels/conv2d.ts — col2im adds in the same order, so results are bit-identical.
 *
 * Row (c, i, j) of the columns, for output row oy, reads input row y = oy·sh − ph + i·dh (zero outside) at
 * columns xx = ox·sw − pw + j·dw. The valid ox form one range [lo, hi) per row (j fixes the offset), so each
 * output row is zeros, a copy (or add) of a contiguous run when sw = 1 — four floats per vector — and zeros.
 *
 * im2col tasks take runs of rows (every row is written by exactly one task); col2im tasks take runs of
 * channels (every row of a channel adds into that channel's plane only), so threads never write the same float.
 */
import { type Code, type Expr, F32, I, i32, type Local, type ModuleBuilder, V } from './encoder.js';

/** Word offsets of the argument block the host writes before an im2col / col2im job. */
export const ConvArg = {
  /** Byte addresses: the image's input planes (x or dx) and the column matrix. */
  x: 0,
  cols: 1,
  cg: 2,
  h: 3,
  w: 4,
  kh: 5,
  kw: 6,
  oh: 7,
  ow: 8,
  sh: 9,
  sw: 10,
  ph: 11,
  pw: 12,
  dh: 13,
  dw: 14,
  /** im2col: column rows per task; col2im: channels per task. */
  perTask: 15,
  words: 16,
} as const;

export interface Im2colFunctions {
  readonly im2col: number;
  readonly col2im: number;
}

const minS = (a: Expr, b: Expr): Expr => I.select(a, b, I.ltS(a, b));
const maxS = (a: Expr, b: Expr): Expr => I.select(a, b, I.gtS(a, b));

export function emitIm2col(mb: ModuleBuilder): Im2colFunctions {
  /** Geometry locals every task reads from the argument block. */
  interface Geometry {
    readonly h: Local;
    readonly w: Local;
    readonly kh: Local;
    readonly kw: Local;
    readonly oh: Local;
    readonly ow: Local;
    readonly sh: Local;
    readonly sw: Local;
    readonly ph: Local;
    readonly pw: Local;
    readonly dh: Local;
    readonly dw: Local;
  }
  const geometry = (c: Code, args: Local): Geometry => {
    const arg = (k: number): Expr => I.load(args, k * 4);
    const [h, w, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw] = c.localsOf(i32, 12);
    c.set(h, arg(ConvArg.h)).set(w, arg(ConvArg.w)).set(kh, arg(ConvArg.kh)).set(kw, arg(ConvArg.kw));
    c.set(oh, arg(ConvArg.oh)).set(ow, arg(ConvArg.ow)).set(sh, arg(ConvArg.sh)).set(sw, arg(ConvArg.sw));
    c.set(ph, arg(ConvArg.ph)).set(pw, arg(ConvArg.pw)).set(dh, arg(ConvArg.dh)).set(dw, arg(ConvArg.dw));
    return { h, w, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw };
  };

  /** ⌈n / d⌉ for d > 0, and 0 for n ≤ 0 (the first ox whose column is ≥ 0 or ≥ w). */
  const ceilPos =
    (n: Expr, d: Expr): Expr =>
    (c: Code) => {
      c.push(I.select(I.divU(I.sub(I.add(n, d), 1), d), 0, I.gtS(n, 0)));
    };

  /**
   * For row (i, j) of one channel, calls `row(y, q, lo, hi, x0)` for every output row oy whose input row y is
   * inside the image (q: the columns' byte address of (oy, 0); x0: the input column of ox = 0, maybe
   * negative; [lo, hi): the valid ox), and `outside(q)` for the others.
   */
  const forOutputRows = (
    c: Code,
    g: Geometry,
    i: Expr,
    j: Expr,
    rowAt: Expr,
    row: (y: Local, q: Local, lo: Local, hi: Local, x0: Local) => void,
    outside: (q: Local) => void,
  ) => {
    const [oy, y, q, lo, hi, x0] = c.localsOf(i32, 6);
    c.set(x0, I.sub(I.mul(j, g.dw), g.pw));
    // Valid ox: x0 + ox·sw ∈ [0, w).
    c.set(lo, minS(g.ow, ceilPos(I.sub(0, x0), g.sw)));
    c.set(hi, maxS(lo, minS(g.ow, ceilPos(I.sub(g.w, x0), g.sw))));
    c.set(q, rowAt);
    c.for(oy, 0, g.oh, 1, () => {
      c.set(y, I.add(I.sub(I.mul(oy, g.sh), g.ph), I.mul(i, g.dh)));
      c.if(
        I.and(I.geS(y, 0), I.ltS(y, g.h)),
        () => row(y, q, lo, hi, x0),
        () => outside(q),
      );
      c.set(q, I.add(q, I.shl(g.ow, 2)));
    });
  };

  /** Zeros floats [from, to) of the row at byte address q. */
  const zeroRange = (c: Code, q: Expr, from: Expr, to: Expr, t: Local) => {
    c.set(t, from);
    c.for(t, t, I.sub(to, 3), 4, () => c.storeV(I.add(q, I.shl(t, 2)), V.zero));
    c.for(t, t, to, 1, () => c.storeF32(I.add(q, I.shl(t, 2)), F32.const(0)));
  };

  const im2col = mb.func('im2col_task', [i32, i32, i32], [], (c, [task, args]) => {
    const g = geometry(c, args);
    const [r, r1, ch, i, j, khw, t, src, plane, planeBytes] = c.localsOf(i32, 10);
    c.set(khw, I.mul(g.kh, g.kw));
    c.set(r, I.mul(task, I.load(args, ConvArg.perTask * 4)));
    c.set(r1, minS(I.mul(I.load(args, ConvArg.cg * 4), khw), I.add(r, I.load(args, ConvArg.perTask * 4))));
    c.set(planeBytes, I.shl(I.mul(g.h, g.w), 2));
    c.for(r, r, r1, 1, () => {
      c.set(ch, I.divU(r, khw));
      c.set(i, I.divU(I.sub(r, I.mul(ch, khw)), g.kw));
      c.set(j, I.sub(I.sub(r, I.mul(ch, khw)), I.mul(i, g.kw)));
      c.set(plane, I.add(I.load(args, ConvArg.x * 4), I.mul(ch, planeBytes)));
      const rowAt = I.add(I.load(args, ConvArg.cols * 4), I.shl(I.mul(I.mul(r, g.oh), g.ow), 2));
      forOutputRows(
        c,
        g,
        i,
        j,
        rowAt,
        (y, q, lo, hi, x0) => {
          zeroRange(c, q, 0, lo, t);
          // Input column of ox = lo, as a byte address.
          c.set(src, I.add(I.add(plane, I.shl(I.mul(y, g.w), 2)), I.shl(I.add(x0, I.mul(lo, g.sw)), 2)));
          c.set(t, lo);
          c.if(I.eq(g.sw, 1), () => {
            c.for(t, t, I.sub(hi, 3), 4, () => {
              c.storeV(I.add(q, I.shl(t, 2)), V.load(src));
              c.set(src, I.add(src, 16));
            });
          });
          c.for(t, t, hi, 1, () => {
            c.storeF32(I.add(q, I.shl(t, 2)), F32.load(src));
            c.set(src, I.add(src, I.shl(g.sw, 2)));
          });
          zeroRange(c, q, hi, g.ow, t);
        },
        (q) => zeroRange(c, q, 0, g.ow, t),
      );
    });
  });

  const col2im = mb.func('col2im_task', [i32, i32, i32], [], (c, [task, args]) => {
    const g = geometry(c, args);
    const [ch, ch1, i, j, r, khw, t, dst, plane, planeBytes, q] = c.localsOf(i32, 11);
    c.set(khw, I.mul(g.kh, g.kw));
    c.set(ch, I.mul(task, I.load(args, ConvArg.perTask * 4)));
    c.set(ch1, minS(I.load(args, ConvArg.cg * 4), I.add(ch, I.load(args, ConvArg.perTask * 4))));
    c.set(planeBytes, I.shl(I.mul(g.h, g.w), 2));
    c.for(ch, ch, ch1, 1, () => {
      c.set(plane, I.add(I.load(args, ConvArg.x * 4), I.mul(ch, planeBytes)));
      c.for(i, 0, g.kh, 1, () => {
        c.for(j, 0, g.kw, 1, () => {
          c.set(r, I.add(I.mul(ch, khw), I.add(I.mul(i, g.kw), j)));
          const rowAt = I.add(I.load(args, ConvArg.cols * 4), I.shl(I.mul(I.mul(r, g.oh), g.ow), 2));
          forOutputRows(
            c,
            g,
            i,
            j,
            rowAt,
            (y, rowQ, lo, hi, x0) => {
              c.set(dst, I.add(I.add(plane, I.shl(I.mul(y, g.w), 2)), I.shl(I.add(x0, I.mul(lo, g.sw)), 2)));
              c.set(q, I.add(rowQ, I.shl(lo, 2)));
              c.set(t, lo);
              c.if(I.eq(g.sw, 1), () => {
                c.for(t, t, I.sub(hi, 3), 4, () => {
                  c.storeV(dst, V.add(V.load(dst), V.load(q)));
                  c.set(dst, I.add(dst, 16));
                  c.set(q, I.add(q, 16));
                });
              });
              c.for(t, t, hi, 1, () => {
                c.storeF32(dst, F32.add(F32.load(dst), F32.load(q)));
                c.set(dst, I.add(dst, I.shl(g.sw, 2)));
                c.set(q, I.add(q, 4));
              });
            },
            () => undefined,
          );
        });
      });
    });
  });

  return { im2col, col2im };
}
