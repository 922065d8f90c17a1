/**
 * The SIMD GEMM and GEMV, emitted as WebAssembly: C = A·B over strided float32 operands in the wasm heap.
 *
 * GEMM follows Goto/BLIS. A task (one tile of C, of one matrix of a batch) packs a KC×NC block of B into
 * NR-column panels and an MC×KC block of A into MR-row panels (both k-major, zero-padded to whole panels),
 * then runs the MR×NR register-blocked micro-kernel over every pair of panels. The micro-kernel keeps
 * MR·NR/4 f32x4 accumulators in registers; for each k it loads NR/4 vectors of the B panel and, per row,
 * broadcasts one value of the A panel (v128.load32_splat: one broadcast-load instruction on x64) and
 * multiply-adds it into that row's accumulators — f32x4.relaxed_madd (one FMA) where the engine has relaxed
 * SIMD, f32x4.mul + f32x4.add otherwise.
 *
 * GEMV (M = 1 or N = 1) is bound by reading the matrix once, so it has its own streaming kernels instead
 * of padding a vector to MR rows: the "axpy" form y += x[p]·M[p, :] when the matrix rows run along the
 * outputs, and the "dot" form y[j] = x·M[j, :] when they run along k (a Linear weight).
 *
 * Accumulation is float32, as BLAS does (per K block in registers, across blocks in C). The typed-array
 * reference accumulates in float64; the conformance tolerances are relative to Σ|terms|, which float32
 * sums of realistic length stay well inside.
 */
import { type Code, type Expr, f32, F32, I, i32, type Local, type ModuleBuilder, V, v128 } from './encoder.js';

export interface GemmShape {
  /** Rows of the register block (broadcast from packed A). */
  readonly mr: number;
  /** f32x4 vectors per row of the register block (NR = 4·nv columns). */
  readonly nv: number;
}

/**
 * 4×8 with or without FMA: 8 accumulators + 2 B vectors + 4 broadcasts (+ 1 product without FMA) = 15
 * registers, what V8 allocates on x64 (one of 16 is its scratch). TurboFan unrolls the k loop by two itself
 * and in the first copy issues every load before the arithmetic, so all broadcasts of a step are live at once:
 * larger blocks (5×8, 6×8, 4×12) spill there, and unrolling by hand is worse (every load of every copy
 * first). Measured on the reference machine in interleaved runs: 4×8, 3×12 and 2×16 within noise of each
 * other, larger or hand-unrolled blocks slower.
 */
export const GEMM_SHAPE: GemmShape = { mr: 4, nv: 2 };
const MR = GEMM_SHAPE.mr;
const NV = GEMM_SHAPE.nv;
const NR = NV * 4;

/** K block: an MR×KC A panel (4 KiB) and a KC×NR B panel (8 KiB) stay in L1 during the micro-kernel. */
export const KC = 256;
/** Rows of A packed at once: the MC×KC block (128 KiB) stays in L2. */
export const MC = 128;
/** Columns of B packed at once: the KC×NC block (1 MiB) stays in L2 beside the A block. */
export const NC = 1024;

/** Word offsets of the GEMM argument block (int32s the host writes before a job). */
export const GemmArg = {
  m: 0,
  n: 1,
  k: 2,
  a: 3,
  aRowStride: 4,
  aColStride: 5,
  b: 6,
  bRowStride: 7,
  bColStride: 8,
  c: 9,
  ldc: 10,
  tileM: 11,
  tileN: 12,
  tilesM: 13,
  tilesN: 14,
  /** Byte address of the batch table: per matrix, the byte offsets of its A, B and C from `a`, `b`, `c`. */
  batchTable: 15,
  /** Byte address of thread 0's scratch; thread t uses scratch + t·scratchStride. */
  scratch: 16,
  scratchStride: 17,
  /** 1: C += A·B (every K block adds); 0: C = A·B. */
  accumulate: 18,
  /** Shared-B jobs (gemm_pack_task / gemm_block_task): byte address of the packed column block of B. */
  packed: 19,
  /** First column of C of the current block, and its width. */
  jc: 20,
  nc: 21,
  /** The block's task grid: rows and columns (whole NR panels) per task, and column tasks per row of tasks. */
  rowsPerTask: 22,
  colsPerTask: 23,
  colTasks: 24,
  words: 25,
} as const;

/** Word offsets of the GEMV argument block. */
export const GemvArg = {
  /** 0: y[j] = Σ_p x[p]·M[p·ld + j] (axpy form); 1: y[j] = Σ_p x[p]·M[j·ld + p] (dot form). */
  form: 0,
  n: 1,
  k: 2,
  x: 3,
  mat: 4,
  ld: 5,
  y: 6,
  /** Outputs per task, and tasks per matrix of the batch. */
  chunk: 7,
  chunks: 8,
  /** Per matrix: byte offsets of its x, M and y (the batch table of the GEMM). */
  batchTable: 9,
  words: 10,
} as const;

/** Bytes of per-thread scratch a GEMM task needs: the packed A and B blocks and one edge tile. */
export const GEMM_SCRATCH_BYTES = (MC * KC + KC * NC + MR * NR) * 4;

const minS = (a: Expr, b: Expr): Expr => I.select(a, b, I.ltS(a, b));

/** i8x16.shuffle patterns of a 4×4 float transpose: interleave lanes 0,1 / 2,3 of two rows, then join halves. */
const LO_PAIRS = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
const HI_PAIRS = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
const LO_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const HI_HALVES = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

export interface GemmFunctions {
  /** gemm_task(task, args, tid): one tile of C. */
  readonly gemm: number;
  /** gemm_pack_task(task, args, tid): one K block of the current column block of B, into the shared buffer. */
  readonly pack: number;
  /** gemm_block_task(task, args, tid): one tile of C's current column block, from the shared packed B. */
  readonly block: number;
  /** gemv_task(task, args, tid): one chunk of outputs. */
  readonly gemv: number;
}

/** Emits the packing routines, the macro-kernel, the GEMV kernels and their task entry points. */
export function emitGemm(mb: ModuleBuilder, relaxed: boolean): GemmFunctions {
  const madd = (a: Expr, b: Expr, acc: Expr): Expr => (relaxed ? V.relaxedMadd(a, b, acc) : V.add(acc, V.mul(a, b)));

  // packA(src, rs, cs, mc, kc, dst): MR-row panels, k-major; rows past mc are zero.
  const packA = mb.func(
    'gemm_pack_a',
    [i32, i32, i32, i32, i32, i32],
    [],
    (c, [src, rs, cs, m, kc, dst]) => {
      const [ir, i, p, s, d, csB, rsB, k4] = c.localsOf(i32, 8);
      const r = c.localsOf(v128, 4);
      const t = c.localsOf(v128, 4);
      c.set(csB, I.shl(cs, 2));
      c.set(rsB, I.shl(rs, 2));
      c.set(k4, I.and(kc, -4));
      c.for(ir, 0, m, MR, () => {
        c.set(d, I.add(dst, I.shl(I.mul(ir, kc), 2)));
        c.set(s, I.add(src, I.mul(ir, rsB)));
        const whole = I.leS(I.add(ir, MR), m);
        c.if(
          I.and(whole, I.eq(rs, 1)),
          () => {
            // Aᵀ stored: the panel's MR values of each k are contiguous, one vector per k.
            c.for(p, 0, kc, 1, () => {
              c.storeV(d, V.load(s));
              c.set(s, I.add(s, csB));
              c.set(d, I.add(d, MR * 4));
            });
          },
          () =>
            c.if(
              I.and(whole, I.eq(cs, 1)),
              () => {
                // Rows contiguous: 4×4 blocks transposed with shuffles, four k at a time.
                c.for(p, 0, k4, 4, () => {
                  for (let q = 0; q < 4; q++) c.set(r[q]!, V.load(I.add(s, I.mul(rsB, q))));
                  c.set(t[0]!, V.shuffle(r[0]!, r[1]!, LO_PAIRS));
                  c.set(t[1]!, V.shuffle(r[0]!, r[1]!, HI_PAIRS));
                  c.set(t[2]!, V.shuffle(r[2]!, r[3]!, LO_PAIRS));
                  c.set(t[3]!, V.shuffle(r[2]!, r[3]!, HI_PAIRS));
                  c.storeV(d, V.shuffle(t[0]!, t[2]!, LO_HALVES));
                  c.storeV(d, V.shuffle(t[0]!, t[2]!, HI_HALVES), 16);
                  c.storeV(d, V.shuffle(t[1]!, t[3]!, LO_HALVES), 32);
                  c.storeV(d, V.shuffle(t[1]!, t[3]!, HI_HALVES), 48);
                  c.set(s, I.add(s, 16));
                  c.set(d, I.add(d, 64));
                });
                c.for(p, k4, kc, 1, () => {
                  for (let q = 0; q < 4; q++) c.storeF32(d, F32.load(I.add(s, I.mul(rsB, q))), q * 4);
                  c.set(s, I.add(s, 4));
                  c.set(d, I.add(d, 16));
                });
              },
              () => {
                // Any strides, and the last panel (rows past m are zero).
                c.for(i, 0, MR, 1, () => {
                  c.set(d, I.add(dst, I.shl(I.add(I.mul(ir, kc), i), 2)));
                  c.if(
                    I.ltS(I.add(ir, i), m),
                    () => {
                      c.set(s, I.add(src, I.shl(I.mul(I.add(ir, i), rs), 2)));
                      c.for(p, 0, kc, 1, () => {
                        c.storeF32(d, F32.load(s));
                        c.set(s, I.add(s, csB));
                        c.set(d, I.add(d, MR * 4));
                      });
                    },
                    () => {
                      c.for(p, 0, kc, 1, () => {
                        c.storeF32(d, F32.const(0));
                        c.set(d, I.add(d, MR * 4));
                      });
                    },
                  );
                });
              },
            ),
        );
      });
    },
    false,
  );

  // packB(src, rs, cs, kc, nc, dst): NR-column panels, k-major; columns past nc are zero.
  const packB = mb.func(
    'gemm_pack_b',
    [i32, i32, i32, i32, i32, i32],
    [],
    (c, [src, rs, cs, kc, n, dst]) => {
      const [jr, j, p, s, d, rsB, csB, panel, k4] = c.localsOf(i32, 9);
      const r = c.localsOf(v128, 4);
      const t = c.localsOf(v128, 4);
      c.set(rsB, I.shl(rs, 2));
      c.set(csB, I.shl(cs, 2));
      c.set(k4, I.and(kc, -4));
      // Any strides, and the last panel (columns past n are zero).
      const packBColumns = () =>
        c.for(j, 0, NR, 1, () => {
          c.set(d, I.add(panel, I.shl(j, 2)));
          c.if(
            I.ltS(I.add(jr, j), n),
            () => {
              c.set(s, I.add(src, I.shl(I.mul(I.add(jr, j), cs), 2)));
              c.for(p, 0, kc, 1, () => {
                c.storeF32(d, F32.load(s));
                c.set(s, I.add(s, rsB));
                c.set(d, I.add(d, NR * 4));
              });
            },
            () => {
              c.for(p, 0, kc, 1, () => {
                c.storeF32(d, F32.const(0));
                c.set(d, I.add(d, NR * 4));
              });
            },
          );
        });
      c.for(jr, 0, n, NR, () => {
        c.set(panel, I.add(dst!, I.shl(I.mul(jr, kc!), 2)));
        c.if(
          I.and(I.eq(cs!, 1), I.leS(I.add(jr, NR), n!)),
          () => {
            // Rows of B are contiguous: each k copies NR floats as NV vectors.
            c.set(s, I.add(src!, I.shl(jr, 2)));
            c.set(d, panel);
            c.for(p, 0, kc!, 1, () => {
              for (let v = 0; v < NV; v++) c.storeV(d, V.load(s, v * 16), v * 16);
              c.set(s, I.add(s, rsB));
              c.set(d, I.add(d, NR * 4));
            });
          },
          () =>
            c.if(
              I.and(I.eq(rs, 1), I.leS(I.add(jr, NR), n)),
              () => {
                // Bᵀ stored (a Linear weight): columns are contiguous; 4×4 blocks transposed, four k at a time.
                for (let v = 0; v < NV; v++) {
                  c.set(d, I.add(panel, v * 16));
                  c.set(s, I.add(src, I.mul(I.add(jr, v * 4), csB)));
                  c.for(p, 0, k4, 4, () => {
                    for (let q = 0; q < 4; q++) c.set(r[q]!, V.load(I.add(s, I.mul(csB, q))));
                    c.set(t[0]!, V.shuffle(r[0]!, r[1]!, LO_PAIRS));
                    c.set(t[1]!, V.shuffle(r[0]!, r[1]!, HI_PAIRS));
                    c.set(t[2]!, V.shuffle(r[2]!, r[3]!, LO_PAIRS));
                    c.set(t[3]!, V.shuffle(r[2]!, r[3]!, HI_PAIRS));
                    c.storeV(d, V.shuffle(t[0]!, t[2]!, LO_HALVES));
                    c.storeV(d, V.shuffle(t[0]!, t[2]!, HI_HALVES), NR * 4);
                    c.storeV(d, V.shuffle(t[1]!, t[3]!, LO_HALVES), NR * 8);
                    c.storeV(d, V.shuffle(t[1]!, t[3]!, HI_HALVES), NR * 12);
                    c.set(s, I.add(s, 16));
                    c.set(d, I.add(d, NR * 16));
                  });
                  c.for(p, k4, kc, 1, () => {
                    for (let q = 0; q < 4; q++) c.storeF32(d, F32.load(I.add(s, I.mul(csB, q))), q * 4);
                    c.set(s, I.add(s, 4));
                    c.set(d, I.add(d, NR * 4));
                  });
                }
              },
              () => packBColumns(),
            ),
        );
      });
    },
    false,
  );

  // macro(mc, nc, kc, pa, pb, pc, ldcBytes, beta, tile): every MR×NR tile of an mc×nc block of C.
  const macro = mb.func(
    'gemm_macro',
    [i32, i32, i32, i32, i32, i32, i32, i32, i32],
    [],
    (c, [m, n, kc, pa, pb, pc, ldcB, beta, tile]) => {
      const [ir, jr, ap, bp, cRow, p, q, end, aPanel, bPanel] = c.localsOf(i32, 10);
      const acc: Local[][] = [];
      for (let i = 0; i < MR; i++) acc.push(Array.from({ length: NV }, () => c.local(v128)));
      const bv = Array.from({ length: NV }, () => c.local(v128));
      const av = c.local(v128);

      c.set(aPanel, I.mul(kc!, MR * 4));
      c.set(bPanel, I.mul(kc!, NR * 4));
      c.set(bp, pb!);
      c.for(jr, 0, n!, NR, () => {
        c.set(ap, pa!);
        c.set(cRow, I.add(pc!, I.shl(jr, 2)));
        c.for(ir, 0, m!, MR, () => {
          for (const r of acc) for (const a of r) c.set(a, V.zero);
          c.set(p, ap);
          c.set(q, bp);
          c.set(end, I.add(ap, aPanel));
          c.doWhile(
            () => {
              for (let v = 0; v < NV; v++) c.set(bv[v]!, V.load(q, v * 16));
              for (let i = 0; i < MR; i++) {
                c.set(av, V.load32Splat(p, i * 4));
                for (let v = 0; v < NV; v++) c.set(acc[i]![v]!, madd(av, bv[v]!, acc[i]![v]!));
              }
              c.set(p, I.add(p, MR * 4));
              c.set(q, I.add(q, NR * 4));
            },
            I.ltU(p, end),
          );
          storeTile(c, { m: m!, n: n!, ir, jr, cRow, ldcB: ldcB!, beta: beta!, tile: tile!, acc });
          c.set(ap, I.add(ap, aPanel));
          c.set(cRow, I.add(cRow, I.mul(ldcB!, MR)));
        });
        c.set(bp, I.add(bp, bPanel));
      });
    },
    false,
  );

  const gemm = mb.func('gemm_task', [i32, i32, i32], [], (c, [taskId, args, tid]) => {
    const A = GemmArg;
    const arg = (w: number): Expr => I.load(args!, w * 4);
    const [m, n, k, ars, acs, brs, bcs, ldc, tileM, tileN, tilesN] = c.localsOf(i32, 11);
    c.set(m, arg(A.m)).set(n, arg(A.n)).set(k, arg(A.k));
    c.set(ars, arg(A.aRowStride)).set(acs, arg(A.aColStride)).set(brs, arg(A.bRowStride)).set(bcs, arg(A.bColStride));
    c.set(ldc, arg(A.ldc)).set(tileM, arg(A.tileM)).set(tileN, arg(A.tileN)).set(tilesN, arg(A.tilesN));
    const [perMatrix, bi, t, i0, j0, mt, nt, entry, aBlk, bBlk, cBlk, scratch, sB, tile, jc, pc, ic, nc, kc, mc] = c.localsOf(i32, 20);

    c.set(perMatrix, I.mul(arg(A.tilesM), tilesN));
    c.set(bi, I.divU(taskId!, perMatrix));
    c.set(t, I.sub(taskId!, I.mul(bi, perMatrix)));
    c.set(i0, I.mul(I.divU(t, tilesN), tileM));
    c.set(j0, I.mul(I.remU(t, tilesN), tileN));
    c.set(mt, minS(tileM, I.sub(m, i0)));
    c.set(nt, minS(tileN, I.sub(n, j0)));
    c.set(entry, I.add(arg(A.batchTable), I.mul(bi, 12)));
    c.set(aBlk, I.add(I.add(arg(A.a), I.load(entry, 0)), I.shl(I.mul(i0, ars), 2)));
    c.set(bBlk, I.add(I.add(arg(A.b), I.load(entry, 4)), I.shl(I.mul(j0, bcs), 2)));
    c.set(cBlk, I.add(I.add(arg(A.c), I.load(entry, 8)), I.shl(I.add(I.mul(i0, ldc), j0), 2)));
    c.set(scratch, I.add(arg(A.scratch), I.mul(tid!, arg(A.scratchStride))));
    c.set(sB, I.add(scratch, MC * KC * 4));
    c.set(tile, I.add(sB, KC * NC * 4));

    c.for(jc, 0, nt, NC, () => {
      c.set(nc, minS(NC, I.sub(nt, jc)));
      c.for(pc, 0, k, KC, () => {
        c.set(kc, minS(KC, I.sub(k, pc)));
        c.call(packB, I.add(bBlk, I.shl(I.add(I.mul(pc, brs), I.mul(jc, bcs)), 2)), brs, bcs, kc, nc, sB);
        c.for(ic, 0, mt, MC, () => {
          c.set(mc, minS(MC, I.sub(mt, ic)));
          c.call(packA, I.add(aBlk, I.shl(I.add(I.mul(ic, ars), I.mul(pc, acs)), 2)), ars, acs, mc, kc, scratch);
          // The first K block overwrites C (unless accumulating), later ones add to it.
          c.call(
            macro,
            mc,
            nc,
            kc,
            scratch,
            sB,
            I.add(cBlk, I.shl(I.add(I.mul(ic, ldc), jc), 2)),
            I.shl(ldc, 2),
            I.or(arg(A.accumulate), I.gtS(pc, 0)),
            tile,
          );
        });
      });
    });
  });

  // Shared-B jobs (one matrix, several threads): the host walks C in column blocks; per block, one job packs
  // all of that block of B once into a shared buffer (a task per K block), then a second job computes it in
  // tiles of rows (and columns where rows are few), each packing only its own rows of A. So no thread repacks
  // another's B, and tiles can be small enough to balance the threads without multiplying the packing work.
  // The packed block is [k/KC][nc/NR][kc][NR]: K block p starts at p·KC·ncPad floats, its panel j at j·kc·NR.
  const ncPad = (nc: Expr): Expr => I.and(I.add(nc, NR - 1), -NR);
  const pack = mb.func('gemm_pack_task', [i32, i32, i32], [], (c, [taskId, args]) => {
    const arg = (w: number): Expr => I.load(args!, w * 4);
    const [pc, kc, brs, bcs] = c.localsOf(i32, 4);
    c.set(brs, arg(GemmArg.bRowStride)).set(bcs, arg(GemmArg.bColStride));
    c.set(pc, I.mul(taskId!, KC));
    c.set(kc, minS(KC, I.sub(arg(GemmArg.k), pc)));
    c.call(
      packB,
      I.add(arg(GemmArg.b), I.shl(I.add(I.mul(pc, brs), I.mul(arg(GemmArg.jc), bcs)), 2)),
      brs,
      bcs,
      kc,
      arg(GemmArg.nc),
      I.add(arg(GemmArg.packed), I.shl(I.mul(pc, ncPad(arg(GemmArg.nc))), 2)),
    );
  });

  const block = mb.func('gemm_block_task', [i32, i32, i32], [], (c, [taskId, args, tid]) => {
    const A = GemmArg;
    const arg = (w: number): Expr => I.load(args!, w * 4);
    const [k, ars, acs, ldc, i0, j0, mt, nt, pad, scratch, tile, cBlk, pc, kc, ic, mc] = c.localsOf(i32, 16);
    c.set(k, arg(A.k)).set(ars, arg(A.aRowStride)).set(acs, arg(A.aColStride)).set(ldc, arg(A.ldc));
    c.set(i0, I.mul(I.divU(taskId!, arg(A.colTasks)), arg(A.rowsPerTask)));
    c.set(j0, I.mul(I.remU(taskId!, arg(A.colTasks)), arg(A.colsPerTask)));
    c.set(mt, minS(arg(A.rowsPerTask), I.sub(arg(A.m), i0)));
    c.set(nt, minS(arg(A.colsPerTask), I.sub(arg(A.nc), j0)));
    c.set(pad, ncPad(arg(A.nc)));
    c.set(scratch, I.add(arg(A.scratch), I.mul(tid!, arg(A.scratchStride))));
    c.set(tile, I.add(scratch, (MC * KC + KC * NC) * 4));
    c.set(cBlk, I.add(arg(A.c), I.shl(I.add(I.mul(i0, ldc), I.add(arg(A.jc), j0)), 2)));
    c.for(pc, 0, k, KC, () => {
      c.set(kc, minS(KC, I.sub(k, pc)));
      c.for(ic, 0, mt, MC, () => {
        c.set(mc, minS(MC, I.sub(mt, ic)));
        c.call(packA, I.add(arg(A.a), I.shl(I.add(I.mul(I.add(i0, ic), ars), I.mul(pc, acs)), 2)), ars, acs, mc, kc, scratch);
        c.call(
          macro,
          mc,
          nt,
          kc,
          scratch,
          I.add(arg(A.packed), I.shl(I.add(I.mul(pc, pad), I.mul(j0, kc)), 2)),
          I.add(cBlk, I.shl(I.mul(ic, ldc), 2)),
          I.shl(ldc, 2),
          I.or(arg(A.accumulate), I.gtS(pc, 0)),
          tile,
        );
      });
    });
  });

  const gemv = emitGemv(mb, madd);
  return { gemm, pack, block, gemv };
}

interface TileStore {
  readonly m: Local;
  readonly n: Local;
  readonly ir: Local;
  readonly jr: Local;
  readonly cRow: Local;
  readonly ldcB: Local;
  readonly beta: Local;
  readonly tile: Local;
  readonly acc: Local[][];
}

/** Writes the accumulators into C: whole vectors for an interior tile, through `tile` for an edge one. */
function storeTile(c: Code, s: TileStore): void {
  const { acc } = s;
  const [row, ii, jj, rows, cols] = c.localsOf(i32, 5);
  const interior = (add: boolean) => () => {
    c.set(row, s.cRow);
    for (let i = 0; i < MR; i++) {
      for (let v = 0; v < NV; v++) c.storeV(row, add ? V.add(V.load(row, v * 16), acc[i]![v]!) : acc[i]![v]!, v * 16);
      if (i < MR - 1) c.set(row, I.add(row, s.ldcB));
    }
  };
  c.if(
    I.and(I.leS(I.add(s.ir, MR), s.m), I.leS(I.add(s.jr, NR), s.n)),
    () => c.if(s.beta, interior(true), interior(false)),
    () => {
      for (let i = 0; i < MR; i++) for (let v = 0; v < NV; v++) c.storeV(s.tile, acc[i]![v]!, (i * NR + v * 4) * 4);
      c.set(rows, minS(MR, I.sub(s.m, s.ir)));
      c.set(cols, minS(NR, I.sub(s.n, s.jr)));
      c.for(ii, 0, rows, 1, () => {
        c.set(row, I.add(s.cRow, I.mul(ii, s.ldcB)));
        c.for(jj, 0, cols, 1, () => {
          const dst = I.add(row, I.shl(jj, 2));
          const val = F32.load(I.add(s.tile, I.shl(I.add(I.mul(ii, NR), jj), 2)));
          c.if(
            s.beta,
            () => c.storeF32(dst, F32.add(F32.load(dst), val)),
            () => c.storeF32(dst, val),
          );
        });
      });
    },
  );
}

/** Sum of the four lanes of an f32x4. */
function hsum(v: Expr): Expr {
  return F32.add(F32.add(V.lane(v, 0), V.lane(v, 1)), F32.add(V.lane(v, 2), V.lane(v, 3)));
}

function emitGemv(mb: ModuleBuilder, madd: (a: Expr, b: Expr, acc: Expr) => Expr): number {
  // axpy(x, mat, ld, y, j0, j1, k): y[j] = Σ_p x[p]·mat[p·ld + j] for j0 ≤ j < j1. Four rows of the matrix
  // per pass over the y chunk (which stays in L1), so y is loaded and stored once per 4 rows.
  const axpy = mb.func(
    'gemv_axpy',
    [i32, i32, i32, i32, i32, i32, i32],
    [],
    (c, [x, mat, ld, y, j0, j1, k]) => {
      const [p, j, r0, yp, ldB, jv] = c.localsOf(i32, 6);
      const xs = Array.from({ length: 4 }, () => c.local(v128));
      const acc = c.local(v128);
      const s = c.local(i32);
      c.set(ldB, I.shl(ld!, 2));
      c.set(jv, I.add(j0!, I.and(I.sub(j1!, j0!), -4)));
      // Zero the chunk first; then every row adds into it.
      c.for(j, j0!, j1!, 1, () => c.storeF32(I.add(y!, I.shl(j, 2)), F32.const(0)));
      c.for(p, 0, I.and(k!, -4), 4, () => {
        for (let r = 0; r < 4; r++) c.set(xs[r]!, V.load32Splat(I.add(x!, I.shl(I.add(p, r), 2))));
        c.set(r0, I.add(mat!, I.shl(I.mul(p, ld!), 2)));
        c.for(j, j0!, jv, 4, () => {
          c.set(yp, I.add(y!, I.shl(j, 2)));
          c.set(s, I.add(r0, I.shl(j, 2)));
          c.set(acc, V.load(yp));
          for (let r = 0; r < 4; r++) {
            c.set(acc, madd(xs[r]!, V.load(s), acc));
            if (r < 3) c.set(s, I.add(s, ldB));
          }
          c.storeV(yp, acc);
        });
        c.for(j, jv, j1!, 1, () => {
          c.set(yp, I.add(y!, I.shl(j, 2)));
          c.set(s, I.add(r0, I.shl(j, 2)));
          // The columns past the last whole vector: rows p..p+3 of column j.
          let sum: Expr = F32.load(yp);
          for (let r = 0; r < 4; r++) sum = F32.add(sum, F32.mul(V.lane(xs[r]!, 0), F32.load(I.add(s, I.mul(ldB, r)))));
          c.storeF32(yp, sum);
        });
      });
      c.for(p, I.and(k!, -4), k!, 1, () => {
        c.set(xs[0]!, V.load32Splat(I.add(x!, I.shl(p, 2))));
        c.set(r0, I.add(mat!, I.shl(I.mul(p, ld!), 2)));
        c.for(j, j0!, jv, 4, () => {
          c.set(yp, I.add(y!, I.shl(j, 2)));
          c.storeV(yp, madd(xs[0]!, V.load(I.add(r0, I.shl(j, 2))), V.load(yp)));
        });
        c.for(j, jv, j1!, 1, () => {
          c.set(yp, I.add(y!, I.shl(j, 2)));
          c.storeF32(yp, F32.add(F32.load(yp), F32.mul(V.lane(xs[0]!, 0), F32.load(I.add(r0, I.shl(j, 2))))));
        });
      });
    },
    false,
  );

  // dot(x, mat, ld, y, j0, j1, k): y[j] = Σ_p x[p]·mat[j·ld + p]; four outputs at a time, two vectors each.
  const dot = mb.func(
    'gemv_dot',
    [i32, i32, i32, i32, i32, i32, i32],
    [],
    (c, [x, mat, ld, y, j0, j1, k]) => {
      const [p, j, kv, row, ldB, jq] = c.localsOf(i32, 6);
      const acc = Array.from({ length: 8 }, () => c.local(v128));
      const x0 = c.local(v128);
      const x1 = c.local(v128);
      const sum = c.local(f32);
      c.set(ldB, I.shl(ld!, 2));
      c.set(kv, I.and(k!, -8));
      c.set(jq, I.add(j0!, I.and(I.sub(j1!, j0!), -4)));
      c.for(j, j0!, jq, 4, () => {
        for (const a of acc) c.set(a, V.zero);
        c.set(row, I.add(mat!, I.shl(I.mul(j, ld!), 2)));
        c.for(p, 0, kv, 8, () => {
          const xp = I.add(x!, I.shl(p, 2));
          c.set(x0, V.load(xp));
          c.set(x1, V.load(xp, 16));
          for (let r = 0; r < 4; r++) {
            const mp = I.add(I.add(row, I.mul(ldB, r)), I.shl(p, 2));
            c.set(acc[2 * r]!, madd(x0, V.load(mp), acc[2 * r]!));
            c.set(acc[2 * r + 1]!, madd(x1, V.load(mp, 16), acc[2 * r + 1]!));
          }
        });
        for (let r = 0; r < 4; r++) {
          c.set(sum, hsum(V.add(acc[2 * r]!, acc[2 * r + 1]!)));
          c.for(p, kv, k!, 1, () => {
            c.set(sum, F32.add(sum, F32.mul(F32.load(I.add(x!, I.shl(p, 2))), F32.load(I.add(I.add(row, I.mul(ldB, r)), I.shl(p, 2))))));
          });
          c.storeF32(I.add(y!, I.shl(I.add(j, r), 2)), sum);
        }
      });
      c.for(j, jq, j1!, 1, () => {
        c.set(acc[0]!, V.zero);
        c.set(acc[1]!, V.zero);
        c.set(row, I.add(mat!, I.shl(I.mul(j, ld!), 2)));
        c.for(p, 0, kv, 8, () => {
          const xp = I.add(x!, I.shl(p, 2));
          const mp = I.add(row, I.shl(p, 2));
          c.set(acc[0]!, madd(V.load(xp), V.load(mp), acc[0]!));
          c.set(acc[1]!, madd(V.load(xp, 16), V.load(mp, 16), acc[1]!));
        });
        c.set(sum, hsum(V.add(acc[0]!, acc[1]!)));
        c.for(p, kv, k!, 1, () => {
          c.set(sum, F32.add(sum, F32.mul(F32.load(I.add(x!, I.shl(p, 2))), F32.load(I.add(row, I.shl(p, 2))))));
        });
        c.storeF32(I.add(y!, I.shl(j, 2)), sum);
      });
    },
    false,
  );

  return mb.func('gemv_task', [i32, i32, i32], [], (c, [taskId, args]) => {
    const A = GemvArg;
    const arg = (w: number): Expr => I.load(args!, w * 4);
    const [bi, ch, j0, j1, entry, chunks, chunk, n] = c.localsOf(i32, 8);
    c.set(chunks, arg(A.chunks)).set(chunk, arg(A.chunk)).set(n, arg(A.n));
    c.set(bi, I.divU(taskId!, chunks));
    c.set(ch, I.sub(taskId!, I.mul(bi, chunks)));
    c.set(j0, I.mul(ch, chunk));
    c.set(j1, minS(n, I.add(j0, chunk)));
    c.set(entry, I.add(arg(A.batchTable), I.mul(bi, 12)));
    const call = (fn: number) => () =>
      c.call(
        fn,
        I.add(arg(A.x), I.load(entry, 0)),
        I.add(arg(A.mat), I.load(entry, 4)),
        arg(A.ld),
        I.add(arg(A.y), I.load(entry, 8)),
        j0,
        j1,
        arg(A.k),
      );
    c.if(arg(A.form), call(dot), call(axpy));
  });
}
