/**
 * The fused DoRA weight norm ‖W + s·B·A‖ per output feature, emitted as WebAssembly: one pass over W, with
 * B·A formed in registers a tile at a time and never stored.
 *
 * Both layouts are the same tile computation, shaped like the GEMM micro-kernel with k = r. A tile is 4 rows
 * × 8 columns of W as stored; its B·A part is Σ_k U[rows, k]·V[k, cols], where U is packed in 4-row panels
 * ([rows/4][r][4], zero-padded) and broadcast a value at a time, and V is packed in 8-column panels
 * ([cols/8][r][8]) and loaded as two vectors — so each k costs two vector loads, four broadcast loads and
 * eight multiply-adds, with one pointer bump per panel. Rows layout (W [out, in]): U = s·B, V = A, squares
 * accumulate per row across the columns. Column layout (W [in, out], transposeW): U = Aᵀ, V = s·Bᵀ, squares
 * accumulate per column across the rows. The host packs both factors (O((in + out)·r), negligible beside the
 * out·in·r multiply-adds).
 *
 * Accumulation: squares are summed in float32 vector lanes for at most 64 terms per lane (a 256-column chunk
 * of a row, or a 64-row chunk of a column), then added into float64 totals: as accurate as a float64 sum for
 * the norm's purposes, with the hot loop in float32 SIMD. A norm whose float32 squares could have overflowed
 * or underflowed shows up as Inf/NaN or tiny; the host recomputes exactly those in float64 (so a zero row is
 * exactly 0 and |W| ≈ 1e-25 does not flush to 0).
 */
import { type Code, type Expr, f32, F32, f64, F64, I, i32, type Local, type ModuleBuilder, V, v128 } from './encoder.js';
import { bf16Lanes, f16Lanes, INV127, pairCodes } from './narrow-wasm.js';

/** Rows of a tile (the U panel height). */
export const WN_ROWS = 4;
const R = WN_ROWS;
/** Columns summed in float32 lanes before the float64 totals (rows layout): 64 squares per lane. */
const ROW_CHUNK = 256;
/** Rows summed in float32 lanes before the float64 totals (column layout). */
export const COL_CHUNK = 64;
/** Per-thread scratch: R float32x4 square accumulators and R float64 totals. */
export const WN_THREAD_SCRATCH = 128;

export const WnArg = {
  out: 0,
  inF: 1,
  r: 2,
  w: 3,
  /** U packed in R-row panels: [rows/R][r][R]. */
  u: 4,
  /** V packed per 8-column panel: [cols/8][r][8]. */
  v: 5,
  /** V unpacked, for the columns past the last whole panel: element (k, j) at vTail + (j·colStride + k·rowStride)·4. */
  vTail: 6,
  vTailRowStride: 7,
  vTailColStride: 8,
  norms: 9,
  /** Rows (rows layout, a multiple of R) or columns (column layout, a multiple of 8) per task. */
  perTask: 10,
  /** Column layout: float32 partial sums and float64 totals, one per column of W. */
  partial: 11,
  total: 12,
  /** Per-thread scratch: thread t uses scratch + t·WN_THREAD_SCRATCH. */
  scratch: 13,
  /** How W is stored (WnFormat); `w` is then the byte address of its elements. */
  format: 14,
  /** int8: SCB per row; 4-bit: absmax per block (float32). */
  wScales: 15,
  /** 4-bit: log2 of the block size. */
  wShift: 16,
  /** 4-bit: the code-pair table (narrow-host.ts pairTable). */
  wPairs: 17,
  words: 18,
} as const;

/**
 * W's storage in the fused norm, widened in registers: float32, bfloat16, float16, nf4/fp4 (the row length a
 * multiple of 8, so 8 elements are 4 whole bytes of one block) or int8 (a float32 scale per stored row).
 */
export const WnFormat = { float32: 0, bfloat16: 1, float16: 2, q4: 3, int8: 4 } as const;
type WnFormatId = (typeof WnFormat)[keyof typeof WnFormat];
const FORMATS: readonly WnFormatId[] = [0, 1, 2, 3, 4];

/** Reads W's elements as float32, exactly as they dequantize. */
interface WReader {
  /** W[row, j..j+8) into two vectors (j a multiple of 8). */
  vec8(row: Expr, j: Expr): readonly [Local, Local];
  /** W[row, j]. */
  one(row: Expr, j: Expr): Expr;
}

/** A reader of W (`cols` elements per stored row) for one function's code. */
function wReader(c: Code, fmt: WnFormatId, args: Local, cols: Local): WReader {
  const arg = (w: number): Expr => I.load(args, w * 4);
  const [w, scales, shift, pairs, e] = c.localsOf(i32, 5);
  const [lo, hi, raw, o, ex, t] = c.localsOf(v128, 6);
  const sc = c.local(v128);
  c.set(w, arg(WnArg.w));
  if (fmt === WnFormat.q4 || fmt === WnFormat.int8) c.set(scales, arg(WnArg.wScales));
  if (fmt === WnFormat.q4) c.set(shift, arg(WnArg.wShift)).set(pairs, arg(WnArg.wPairs));
  const index = (row: Expr, j: Expr) => c.set(e, I.add(I.mul(row, cols), j));
  const f16 =
    (lanes: Expr): Expr =>
    (cc: Code) => {
      cc.set(raw, lanes);
      cc.push(f16Lanes(cc, raw, o, ex, t));
    };
  return {
    vec8(row, j) {
      index(row, j);
      switch (fmt) {
        case WnFormat.float32:
          c.set(lo, V.load(I.add(w, I.shl(e, 2)))).set(hi, V.load(I.add(w, I.shl(e, 2)), 16));
          break;
        case WnFormat.bfloat16:
        case WnFormat.float16: {
          const widen = fmt === WnFormat.bfloat16 ? bf16Lanes : f16;
          c.set(sc, V.load(I.add(w, I.shl(e, 1))));
          c.set(lo, widen(V.i32FromI16LowU(sc))).set(hi, widen(V.i32FromI16HighU(sc)));
          break;
        }
        case WnFormat.int8: {
          // fround(fround(q · SCB[row]) · fround(1/127)), as bitsandbytes dequantizes.
          c.set(raw, V.i16FromI8Low(V.load64Zero(I.add(w, e))));
          c.set(sc, V.load32Splat(I.add(scales, I.shl(row, 2))));
          const deq = (q: Expr) => V.mul(V.mul(V.fromI32(q), sc), V.constF32(INV127));
          c.set(lo, deq(V.i32FromI16LowS(raw))).set(hi, deq(V.i32FromI16HighS(raw)));
          break;
        }
        case WnFormat.q4: {
          // fround(code · absmax[block]); e is a multiple of 8, so its elements are 4 whole bytes of one block.
          c.set(sc, V.load32Splat(I.add(scales, I.shl(I.shrU(e, shift), 2))));
          c.set(e, I.add(w, I.shrU(e, 1)));
          c.set(lo, V.mul(pairCodes(pairs, e, 0), sc));
          c.set(hi, V.mul(pairCodes(pairs, e, 2), sc));
          break;
        }
      }
      return [lo, hi];
    },
    one(row, j) {
      return (cc: Code) => {
        index(row, j);
        switch (fmt) {
          case WnFormat.float32:
            cc.push(F32.load(I.add(w, I.shl(e, 2))));
            break;
          case WnFormat.bfloat16:
            cc.push(V.lane(bf16Lanes(V.isplat(I.load16U(I.add(w, I.shl(e, 1))))), 0));
            break;
          case WnFormat.float16:
            cc.push(V.lane(f16(V.isplat(I.load16U(I.add(w, I.shl(e, 1))))), 0));
            break;
          case WnFormat.int8:
            cc.push(F32.mul(F32.mul(F32.fromI32(I.load8S(I.add(w, e))), F32.load(I.add(scales, I.shl(row, 2)))), F32.const(INV127)));
            break;
          case WnFormat.q4:
            // Never reached: a 4-bit W's rows are whole vectors (the host checks cols % 8 = 0).
            cc.push(F32.const(0));
            break;
        }
      };
    },
  };
}

export interface WeightNormFunctions {
  readonly rows: number;
  readonly cols: number;
}

const minS = (a: Expr, b: Expr): Expr => I.select(a, b, I.ltS(a, b));

/** Emits `body(f)` for each storage format, dispatched on `fmt` (an if-chain). */
function byFormat(c: Code, fmt: Expr, body: (f: WnFormatId) => void, from = 0): void {
  const f = FORMATS[from]!;
  if (from === FORMATS.length - 1) {
    body(f);
    return;
  }
  c.if(
    I.eq(fmt, f),
    () => body(f),
    () => byFormat(c, fmt, body, from + 1),
  );
}

export function emitWeightNorm(mb: ModuleBuilder, relaxed: boolean): WeightNormFunctions {
  const madd = (a: Expr, b: Expr, acc: Expr): Expr => (relaxed ? V.relaxedMadd(a, b, acc) : V.add(acc, V.mul(a, b)));

  /** Shared state of one task's code: the tile accumulators and loop locals. */
  interface Tile {
    readonly ba: Local[][];
    readonly av: Local[];
    readonly bs: Local;
    readonly p: Local;
    readonly q: Local;
    readonly end: Local;
  }
  const newTile = (c: Code): Tile => ({
    ba: Array.from({ length: R }, () => [c.local(v128), c.local(v128)]),
    av: [c.local(v128), c.local(v128)],
    bs: c.local(v128),
    p: c.local(i32),
    q: c.local(i32),
    end: c.local(i32),
  });

  /**
   * ba[t] = Σ_k U[row t, k]·V[k, panel] for t < n: U values at up + k·R·4 + t·4 (+ `lane`·4 for a single-row
   * tile inside a panel), V vectors at vp + k·32. `uStride` = R·4 bytes per k, `uEnd` = up + r·R·4.
   */
  const tileBA = (c: Code, t: Tile, n: number, up: Expr, uEnd: Expr, vp: Expr, lane: Expr) => {
    for (let i = 0; i < n; i++) for (const x of t.ba[i]!) c.set(x, V.zero);
    c.set(t.p, I.add(up, I.shl(lane, 2)));
    c.set(t.end, I.add(uEnd, I.shl(lane, 2)));
    c.set(t.q, vp);
    c.if(I.ltU(t.p, t.end), () => {
      c.doWhile(
        () => {
          c.set(t.av[0]!, V.load(t.q));
          c.set(t.av[1]!, V.load(t.q, 16));
          for (let i = 0; i < n; i++) {
            c.set(t.bs, V.load32Splat(t.p, i * 4));
            c.set(t.ba[i]![0]!, madd(t.bs, t.av[0]!, t.ba[i]![0]!));
            c.set(t.ba[i]![1]!, madd(t.bs, t.av[1]!, t.ba[i]![1]!));
          }
          c.set(t.p, I.add(t.p, R * 4));
          c.set(t.q, I.add(t.q, 32));
        },
        I.ltU(t.p, t.end),
      );
    });
  };

  /** The scalar B·A value of one element past the last whole panel: Σ_k U[k]·V[k, j] (U values `uStep` apart). */
  const scalarBA = (c: Code, u: Expr, uStepB: number, vCol: Expr, vRowStrideB: Local, r: Local, kk: Local, acc: Local) => {
    c.set(acc, F32.const(0));
    c.for(kk, 0, r, 1, () => {
      c.set(acc, F32.add(acc, F32.mul(F32.load(I.add(u, I.mul(kk, uStepB))), F32.load(I.add(vCol, I.mul(kk, vRowStrideB))))));
    });
  };

  /** Float64 sum of the four lanes of a float32x4. */
  const widenSum = (v: Expr): Expr =>
    F64.add(F64.add(F64.promote(V.lane(v, 0)), F64.promote(V.lane(v, 1))), F64.add(F64.promote(V.lane(v, 2)), F64.promote(V.lane(v, 3))));

  // Hot loops live in small functions called once per row tile, not inline in a task: V8 runs a function's
  // first calls in its baseline tier and only switches at a call boundary, so a single long call would run a
  // whole large norm unoptimised.

  /** Rows layout, one tile of n rows starting at row i (i a multiple of R for n = R): norms[i..i+n). */
  const rowsTile = (n: number, fmt: WnFormatId) =>
    mb.func(
      `wn_rows_tile${n}_${fmt}`,
      [i32, i32, i32],
      [],
      (c, [i, args, sc]) => {
        const arg = (w: number): Expr => I.load(args, w * 4);
        const [inF, r, vTail, vrsB, vcs, j, jc, jEnd, panels, vp, kk, up, uPanel, lane] = c.localsOf(i32, 14);
        const t = newTile(c);
        const x = c.local(v128);
        const y = c.local(v128);
        const s = c.local(f32);
        const ve = c.local(f32);
        c.set(inF, arg(WnArg.inF)).set(r, arg(WnArg.r));
        const wr = wReader(c, fmt, args, inF);
        c.set(vTail, arg(WnArg.vTail))
          .set(vrsB, I.shl(arg(WnArg.vTailRowStride), 2))
          .set(vcs, arg(WnArg.vTailColStride));
        c.set(uPanel, I.mul(r, R * 4));
        c.set(panels, I.and(inF, -8));
        // Square accumulators (float32x4 at sc + 16·t) and float64 totals (at sc + 64 + 8·t) live in scratch:
        // they change once per tile, and keeping them out of registers leaves all 15 to the B·A tile.
        const sqAt = (k: number) => I.add(sc, k * 16);
        const totAt = (k: number) => I.add(sc, 64 + k * 8);
        // U panel of row i, and i's lane in it (0 for a whole tile).
        c.set(up, I.add(arg(WnArg.u), I.mul(I.shrU(i, 2), uPanel)));
        c.set(lane, n === R ? 0 : I.and(i, R - 1));
        for (let k = 0; k < n; k++) {
          c.storeV(sqAt(k), V.zero);
          c.storeF64(totAt(k), F64.const(0));
        }
        c.set(vp, arg(WnArg.v));
        c.for(jc, 0, panels, ROW_CHUNK, () => {
          c.set(jEnd, minS(panels, I.add(jc, ROW_CHUNK)));
          c.for(j, jc, jEnd, 8, () => {
            tileBA(c, t, n, up, I.add(up, uPanel), vp, lane);
            for (let k = 0; k < n; k++) {
              const [w0, w1] = wr.vec8(I.add(i, k), j);
              c.set(x, V.add(w0, t.ba[k]![0]!));
              c.set(y, V.add(w1, t.ba[k]![1]!));
              c.storeV(sqAt(k), madd(y, y, madd(x, x, V.load(sqAt(k)))));
            }
            c.set(vp, I.add(vp, I.shl(r, 5)));
          });
          for (let k = 0; k < n; k++) {
            c.storeF64(totAt(k), F64.add(F64.load(totAt(k)), widenSum(V.load(sqAt(k)))));
            c.storeV(sqAt(k), V.zero);
          }
        });
        // Columns past the last whole panel, one at a time.
        c.for(j, panels, inF, 1, () => {
          for (let k = 0; k < n; k++) {
            scalarBA(c, I.add(up, I.shl(I.add(lane, k), 2)), R * 4, I.add(vTail, I.shl(I.mul(j, vcs), 2)), vrsB, r, kk, s);
            c.set(ve, F32.add(wr.one(I.add(i, k), j), s));
            c.storeF64(totAt(k), F64.add(F64.load(totAt(k)), F64.mul(F64.promote(ve), F64.promote(ve))));
          }
        });
        const norms = arg(WnArg.norms);
        for (let k = 0; k < n; k++) c.storeF32(I.add(norms, I.shl(I.add(i, k), 2)), F32.demote(F64.sqrt(F64.load(totAt(k)))));
      },
      false,
    );
  const rowsTiles = FORMATS.map((f) => [rowsTile(R, f), rowsTile(1, f)] as const);

  // Rows layout: each task takes `perTask` rows (a multiple of R); squares accumulate per row.
  const rows = mb.func('wn_rows_task', [i32, i32, i32], [], (c, [task, args, tid]) => {
    const [i, i1, sc] = c.localsOf(i32, 3);
    c.set(sc, I.add(I.load(args, WnArg.scratch * 4), I.mul(tid, WN_THREAD_SCRATCH)));
    c.set(i, I.mul(task, I.load(args, WnArg.perTask * 4)));
    c.set(i1, minS(I.load(args, WnArg.out * 4), I.add(i, I.load(args, WnArg.perTask * 4))));
    byFormat(c, I.load(args, WnArg.format * 4), (f) => {
      const [tileR, tile1] = rowsTiles[f]!;
      c.block(() => {
        c.loop(() => {
          c.brIf(1, I.gtS(I.add(i, R), i1));
          c.call(tileR, i, args, sc);
          c.set(i, I.add(i, R));
          c.br(0);
        });
      });
      c.for(i, i, i1, 1, () => c.call(tile1, i, args, sc));
    });
  });

  /** Column layout, one tile of n stored rows from row i over columns [j0, j1): partial sums of squares. */
  const colsTile = (n: number, fmt: WnFormatId) =>
    mb.func(
      `wn_cols_tile${n}_${fmt}`,
      [i32, i32, i32, i32],
      [],
      (c, [i, j0, j1, args]) => {
        const arg = (w: number): Expr => I.load(args, w * 4);
        const [out, r, vTail, vrsB, vcs, part, total, jv, j, vp, kk, pp, up, uPanel, lane] = c.localsOf(i32, 15);
        const t = newTile(c);
        const x = c.local(v128);
        const y = c.local(v128);
        const s = c.local(f32);
        const ve = c.local(f32);
        const t64 = c.local(f64);
        c.set(out, arg(WnArg.out)).set(r, arg(WnArg.r));
        const wr = wReader(c, fmt, args, out);
        c.set(vTail, arg(WnArg.vTail))
          .set(vrsB, I.shl(arg(WnArg.vTailRowStride), 2))
          .set(vcs, arg(WnArg.vTailColStride));
        c.set(part, arg(WnArg.partial)).set(total, arg(WnArg.total));
        c.set(uPanel, I.mul(r, R * 4));
        c.set(jv, minS(j1, I.and(out, -8)));
        c.set(up, I.add(arg(WnArg.u), I.mul(I.shrU(i, 2), uPanel)));
        c.set(lane, n === R ? 0 : I.and(i, R - 1));
        c.set(vp, I.add(arg(WnArg.v), I.shl(I.mul(j0, r), 2)));
        c.for(j, j0, jv, 8, () => {
          tileBA(c, t, n, up, I.add(up, uPanel), vp, lane);
          c.set(pp, I.add(part, I.shl(j, 2)));
          c.set(x, V.load(pp));
          c.set(y, V.load(pp, 16));
          for (let k = 0; k < n; k++) {
            const [w0, w1] = wr.vec8(I.add(i, k), j);
            c.set(t.ba[k]![0]!, V.add(w0, t.ba[k]![0]!));
            c.set(t.ba[k]![1]!, V.add(w1, t.ba[k]![1]!));
            c.set(x, madd(t.ba[k]![0]!, t.ba[k]![0]!, x));
            c.set(y, madd(t.ba[k]![1]!, t.ba[k]![1]!, y));
          }
          c.storeV(pp, x);
          c.storeV(pp, y, 16);
          c.set(vp, I.add(vp, I.shl(r, 5)));
        });
        // Columns past the last whole panel (only the last task has any), straight into the float64 totals.
        c.for(j, jv, j1, 1, () => {
          c.set(t64, F64.const(0));
          for (let k = 0; k < n; k++) {
            scalarBA(c, I.add(up, I.shl(I.add(lane, k), 2)), R * 4, I.add(vTail, I.shl(I.mul(j, vcs), 2)), vrsB, r, kk, s);
            c.set(ve, F32.add(wr.one(I.add(i, k), j), s));
            c.set(t64, F64.add(t64, F64.mul(F64.promote(ve), F64.promote(ve))));
          }
          c.set(pp, I.add(total, I.shl(j, 3)));
          c.storeF64(pp, F64.add(F64.load(pp), t64));
        });
      },
      false,
    );
  const colsTiles = FORMATS.map((f) => [colsTile(R, f), colsTile(1, f)] as const);

  // Column layout: each task takes `perTask` columns (whole panels, and the tail for the last task); squares
  // accumulate per column across rows, in `partial` (float32) and `total` (float64).
  const cols = mb.func('wn_cols_task', [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [inF, part, total, norms, j0, j1, i, ic, icEnd, j, pp] = c.localsOf(i32, 11);
    c.set(inF, arg(WnArg.inF)).set(part, arg(WnArg.partial)).set(total, arg(WnArg.total)).set(norms, arg(WnArg.norms));
    c.set(j0, I.mul(task, arg(WnArg.perTask)));
    c.set(j1, minS(arg(WnArg.out), I.add(j0, arg(WnArg.perTask))));
    c.for(j, j0, j1, 1, () => {
      c.storeF32(I.add(part, I.shl(j, 2)), F32.const(0));
      c.storeF64(I.add(total, I.shl(j, 3)), F64.const(0));
    });
    c.for(ic, 0, inF, COL_CHUNK, () => {
      c.set(icEnd, minS(inF, I.add(ic, COL_CHUNK)));
      c.set(i, ic);
      byFormat(c, I.load(args, WnArg.format * 4), (f) => {
        const [tileR, tile1] = colsTiles[f]!;
        c.block(() => {
          c.loop(() => {
            c.brIf(1, I.gtS(I.add(i, R), icEnd));
            c.call(tileR, i, j0, j1, args);
            c.set(i, I.add(i, R));
            c.br(0);
          });
        });
        c.for(i, i, icEnd, 1, () => c.call(tile1, i, j0, j1, args));
      });
      // Fold the float32 partials into the float64 totals.
      c.for(j, j0, j1, 1, () => {
        c.set(pp, I.add(total, I.shl(j, 3)));
        c.storeF64(pp, F64.add(F64.load(pp), F64.promote(F32.load(I.add(part, I.shl(j, 2))))));
        c.storeF32(I.add(part, I.shl(j, 2)), F32.const(0));
      });
    });
    c.for(j, j0, j1, 1, () => c.storeF32(I.add(norms, I.shl(j, 2)), F32.demote(F64.sqrt(F64.load(I.add(total, I.shl(j, 3)))))));
  });

  return { rows, cols };
}
