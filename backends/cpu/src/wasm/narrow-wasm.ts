/**
 * Narrow weights in WebAssembly SIMD (docs/narrow-weights.md): W stored as bfloat16 / float16 bits, or packed
 * in bitsandbytes' nf4 / fp4 / int8 layouts, widened to float32 in registers.
 *
 * - `nw_gemv_task`: y[r] = Σ_k x[k]·W[r, k] for one chunk of rows (a Linear's forward at one token), reading
 *   W once and never storing it widened. 4-bit: each block's dot with x is summed in lanes, then scaled once by
 *   its absmax (where blocks straddle rows, each row is cut at block boundaries first). bfloat16 /
 *   float16 read x split by parity per group of 8 (`nw_xsplit_task`, once per call), so the two elements in
 *   each i32 lane of W are widened in place (bfloat16: `v << 16` and `v & 0xffff0000`, one op each).
 * - `nw_decode_task`: rows of W widened into a float32 buffer (exactly bitsandbytes' dequantized values):
 *   the embedding gather writes the rows it picks straight into its output, and the GEMM / input-gradient /
 *   weight-norm paths widen one panel of rows at a time into a small scratch that the float32 kernels read.
 *
 * 4-bit decoding (decode): 16 bytes hold 32 codes; their nibbles are interleaved into element order (high
 * nibble first) and looked up with i8x16.swizzle in four 16-byte planes (byte k of each of the 16 float32 code
 * values), then the four byte vectors are interleaved into float32 lanes: 4 swizzles and 8 shuffles give 16
 * values. The GEMV and the weight norm instead read each byte's two codes from a 256-entry table (pairTable in
 * narrow-host.ts, L1-resident): two loads per 4 elements where the swizzle decode needs 6 shuffles. float16: the exponent is re-biased in integer lanes, subnormals renormalised by one float subtract,
 * Inf/NaN kept. int8: sign-extended to i32 lanes and converted.
 */
import { type Code, type Expr, f32, F32, I, i32, type Local, type ModuleBuilder, V, v128 } from './encoder.js';

export const NW_BF16 = 0;
export const NW_F16 = 1;
export const NW_Q4 = 2;
export const NW_INT8 = 3;

export const NwArg = {
  format: 0,
  rows: 1,
  cols: 2,
  /** Byte address of W's stored elements (2 bytes each, packed nibbles, or int8). */
  data: 3,
  /** float32 absmax per block (4-bit) or SCB per row (int8). */
  scales: 4,
  /** log2 of the 4-bit block size. */
  blockShift: 5,
  /** decode: output (row row0 at out); gemv: y. */
  out: 6,
  row0: 7,
  row1: 8,
  perTask: 9,
  /** gemv: x, float32 [cols]. */
  x: 10,
  /** 4-bit: four 16-byte planes of the code table, then the 16 float32 codes (decode; the gemv reads the codes). */
  table: 11,
  /** 4-bit gemv: 256 × 2 float32, the two codes of each byte value (narrow-host.ts pairTable). */
  pairs: 12,
  /** 16-bit gemv: x split by parity per group of 8 (`nw_xsplit_task`), float32 [8·⌊cols/8⌋]. */
  xsplit: 13,
  words: 14,
} as const;

/** Bytes of a 4-bit code table as the kernels read it (see `codeTableBytes`). */
export const NW_TABLE_BYTES = 128;

/** Byte planes (plane k = byte k of each code's float32 bits), then the codes themselves. */
export function codeTableBytes(code: Float32Array): Uint8Array {
  const raw = new Uint8Array(code.buffer.slice(code.byteOffset, code.byteOffset + 64));
  const out = new Uint8Array(NW_TABLE_BYTES);
  for (let c = 0; c < 16; c++) for (let k = 0; k < 4; k++) out[k * 16 + c] = raw[c * 4 + k]!;
  out.set(raw, 64);
  return out;
}

const INTERLEAVE_LOW = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const INTERLEAVE_HIGH = INTERLEAVE_LOW.map((i) => i + 8);
const PAIRS_LOW = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
const PAIRS_HIGH = PAIRS_LOW.map((i) => i + 8);
/** fround(1/127): bitsandbytes' int8 dequantization factor. */
export const INV127 = Math.fround(1 / 127);

/** float16 bits in i32 lanes → float32 lanes (exact, subnormals and Inf/NaN included). */
export const f16Lanes = (c: Code, h: Local, o: Local, e: Local, t: Local): Expr => {
  c.set(o, V.ishl(V.and(h, V.constI32(0x7fff)), 13));
  c.set(e, V.and(o, V.constI32(0x0f800000)));
  c.set(o, V.iadd(o, V.constI32(0x38000000)));
  c.set(o, V.iadd(o, V.and(V.ieq(e, V.constI32(0x0f800000)), V.constI32(0x38000000))));
  c.set(t, V.ieq(e, V.zero));
  c.set(o, V.iadd(o, V.and(t, V.constI32(0x00800000))));
  c.set(o, V.bitselect(V.sub(o, V.constI32(0x38800000)), o, t));
  return V.or(o, V.ishl(V.and(h, V.constI32(0x8000)), 16));
};

/** 16 int8 values → four i32x4 vectors of them, sign-extended (element order). */
export const int8Lanes = (c: Code, bytes16: Expr, v: Local, tmp: readonly Local[]): Expr[] => {
  c.set(v, bytes16);
  c.set(tmp[0]!, V.i16FromI8Low(v));
  c.set(tmp[1]!, V.i16FromI8High(v));
  return [V.i32FromI16LowS(tmp[0]!), V.i32FromI16HighS(tmp[0]!), V.i32FromI16LowS(tmp[1]!), V.i32FromI16HighS(tmp[1]!)];
};

/** bfloat16 bits in i32 lanes → float32 lanes. */
export const bf16Lanes = (raw: Expr): Expr => V.ishl(raw, 16);

/**
 * The codes of the 4 elements in bytes `at + off` and `at + off + 1` of packed 4-bit data, from the pair table at
 * `pairs` (256 entries of 2 float32: a byte's high-nibble code, then its low one; narrow-host.ts pairTable).
 */
export const pairCodes = (pairs: Local, at: Expr, off: number): Expr =>
  V.load64Lane(I.add(pairs, I.shl(I.load8U(at, off + 1), 3)), V.load64Zero(I.add(pairs, I.shl(I.load8U(at, off), 3))), 1);

export interface NarrowFunctions {
  readonly decode: number;
  readonly gemv: number;
  readonly xsplit: number;
}

/** f32 lanes 0, 2 of a then of b (the even elements of 8), and 1, 3 of each (the odd ones). */
const EVEN_LANES = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
const ODD_LANES = EVEN_LANES.map((i) => i + 4);

export function emitNarrow(mb: ModuleBuilder, relaxed: boolean): NarrowFunctions {
  const madd = (a: Expr, b: Expr, acc: Expr): Expr => (relaxed ? V.relaxedMadd(a, b, acc) : V.add(acc, V.mul(a, b)));
  const hsum = (v: Expr): Expr => F32.add(F32.add(V.lane(v, 0), V.lane(v, 1)), F32.add(V.lane(v, 2), V.lane(v, 3)));

  /** `for (k = 0; k + step ≤ cols; k += step) body()`: the vector part of a row; k is left at the tail. */
  const vectorSteps = (c: Code, k: Local, cols: Local, step: number, body: () => void) => {
    c.set(k, 0);
    c.block(() => {
      c.loop(() => {
        c.brIf(1, I.gtS(I.add(k, step), cols));
        body();
        c.set(k, I.add(k, step));
        c.br(0);
      });
    });
  };

  /**
   * Emits `body` for bfloat16 and for float16 (dispatched on fmt), with that format's widening of i32 lanes
   * holding one element each (`widen`), and of i32 lanes holding two (`even`: the low halves, `odd`: the high
   * ones). bfloat16 needs one op for each: `v << 16` is the even element, `v & 0xffff0000` the odd one.
   */
  const by16BitFormat = (
    c: Code,
    fmt: Local,
    lanes: readonly Local[],
    body: (widen: (raw: Expr) => Expr, even: (v: Expr) => Expr, odd: (v: Expr) => Expr) => void,
  ) => {
    const [h, o, e, t] = lanes;
    c.if(
      I.eq(fmt, NW_BF16),
      () =>
        body(
          bf16Lanes,
          (v) => V.ishl(v, 16),
          (v) => V.and(v, V.constI32(-0x10000)),
        ),
      () => {
        const widen = (raw: Expr) => (cc: Code) => {
          cc.set(h!, raw);
          cc.push(f16Lanes(cc, h!, o!, e!, t!));
        };
        // Two float16 per lane: sign and magnitude moved into float32's fields as they stand (the magnitude 3
        // bits right), times 2^112 (exact: re-biases the exponent, renormalises subnormals); exponent 31 (Inf,
        // NaN) then lands in [2^16, 2^17) and gets float32's all-ones exponent, its mantissa kept.
        const rebias = (u: Expr) => (cc: Code) => {
          cc.set(o!, u);
          cc.push(
            V.or(
              V.mul(o!, V.constF32(2 ** 112)),
              V.and(V.ieq(V.and(o!, V.constI32(0x0f800000)), V.constI32(0x0f800000)), V.constI32(0x7f800000)),
            ),
          );
        };
        const fields = V.constI32(0x8fffe000 | 0);
        body(
          widen,
          (v) => rebias(V.and(V.ishrS(V.ishl(v, 16), 3), fields)),
          (v) => rebias(V.and(V.ishrS(v, 3), fields)),
        );
      },
    );
  };

  /** 16 nibbles (one per byte lane, element order) → 4 float32 vectors of their codes, into `out`. */
  const decode16 = (
    c: Code,
    nib: Expr,
    planes: readonly Local[],
    bytes: readonly Local[],
    tmp: readonly Local[],
    out: readonly Local[],
  ) => {
    for (let k = 0; k < 4; k++) c.set(bytes[k]!, V.swizzle(planes[k]!, nib));
    c.set(tmp[0]!, V.shuffle(bytes[0]!, bytes[1]!, INTERLEAVE_LOW));
    c.set(tmp[1]!, V.shuffle(bytes[2]!, bytes[3]!, INTERLEAVE_LOW));
    c.set(out[0]!, V.shuffle(tmp[0]!, tmp[1]!, PAIRS_LOW));
    c.set(out[1]!, V.shuffle(tmp[0]!, tmp[1]!, PAIRS_HIGH));
    c.set(tmp[0]!, V.shuffle(bytes[0]!, bytes[1]!, INTERLEAVE_HIGH));
    c.set(tmp[1]!, V.shuffle(bytes[2]!, bytes[3]!, INTERLEAVE_HIGH));
    c.set(out[2]!, V.shuffle(tmp[0]!, tmp[1]!, PAIRS_LOW));
    c.set(out[3]!, V.shuffle(tmp[0]!, tmp[1]!, PAIRS_HIGH));
  };

  /** 16 packed bytes at `p` → 32 codes in element order (8 vectors into `out`). */
  const decode32 = (
    c: Code,
    p: Expr,
    v: Local,
    nib: readonly Local[],
    planes: readonly Local[],
    bytes: readonly Local[],
    tmp: readonly Local[],
    out: readonly Local[],
  ) => {
    c.set(v, V.load(p));
    c.set(tmp[0]!, V.i8ShrU(v, 4));
    c.set(tmp[1]!, V.and(v, V.constBytes(new Array(16).fill(15))));
    c.set(nib[0]!, V.shuffle(tmp[0]!, tmp[1]!, INTERLEAVE_LOW));
    c.set(nib[1]!, V.shuffle(tmp[0]!, tmp[1]!, INTERLEAVE_HIGH));
    decode16(c, nib[0]!, planes, bytes, tmp, out.slice(0, 4));
    decode16(c, nib[1]!, planes, bytes, tmp, out.slice(4, 8));
  };

  const loadPlanes = (c: Code, table: Local, planes: readonly Local[]) => {
    for (let k = 0; k < 4; k++) c.set(planes[k]!, V.load(table, k * 16));
  };

  /** One 4-bit element e, exactly: code[nibble] · absmax[e >> shift]. */
  const q4Scalar =
    (data: Local, scales: Local, table: Local, shift: Local, e: Expr, b: Local): Expr =>
    (c: Code) => {
      c.set(b, I.load8U(I.add(data, I.shrU(e, 1))));
      c.set(b, I.select(I.and(b, 15), I.shrU(b, 4), I.and(e, 1)));
      c.push(F32.mul(F32.load(I.add(table, I.add(64, I.shl(b, 2)))), F32.load(I.add(scales, I.shl(I.shrU(e, shift), 2)))));
    };

  // nw_decode_task: rows [row0 + task·perTask, …) of W widened into out (row row0 at out).
  const decode = mb.func('nw_decode_task', [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [fmt, cols, data, scales, shift, out, row0, r0, r1, table, r, k, src, dst, e, e1, b] = c.localsOf(i32, 17);
    const [v, h, o, ex, t] = c.localsOf(v128, 5);
    const planes = c.localsOf(v128, 4);
    const bytes = c.localsOf(v128, 4);
    const tmp = c.localsOf(v128, 2);
    const nib = c.localsOf(v128, 2);
    const vals = c.localsOf(v128, 8);
    const scale = c.local(v128);
    c.set(fmt, arg(NwArg.format)).set(cols, arg(NwArg.cols)).set(data, arg(NwArg.data)).set(scales, arg(NwArg.scales));
    c.set(shift, arg(NwArg.blockShift)).set(out, arg(NwArg.out)).set(row0, arg(NwArg.row0)).set(table, arg(NwArg.table));
    c.set(r0, I.add(row0, I.mul(task, arg(NwArg.perTask))));
    c.set(r1, I.add(r0, arg(NwArg.perTask)));
    c.set(r1, I.select(arg(NwArg.row1), r1, I.ltS(arg(NwArg.row1), r1)));
    c.if(I.geS(r0, r1), () => c.ret());
    c.if(
      I.eq(fmt, NW_Q4),
      () => {
        // The flat element range of these rows: a scalar head to a 32-element boundary, 32 at a time, a tail.
        loadPlanes(c, table, planes);
        c.set(e, I.mul(r0, cols));
        c.set(e1, I.mul(r1, cols));
        c.set(dst, I.add(out, I.shl(I.mul(I.sub(r0, row0), cols), 2)));
        c.block(() => {
          c.loop(() => {
            c.brIf(1, I.or(I.eqz(I.and(e, 31)), I.geS(e, e1)));
            c.storeF32(dst, q4Scalar(data, scales, table, shift, e, b));
            c.set(e, I.add(e, 1)).set(dst, I.add(dst, 4));
            c.br(0);
          });
        });
        c.block(() => {
          c.loop(() => {
            c.brIf(1, I.gtS(I.add(e, 32), e1));
            decode32(c, I.add(data, I.shrU(e, 1)), v, nib, planes, bytes, tmp, vals);
            c.set(scale, V.load32Splat(I.add(scales, I.shl(I.shrU(e, shift), 2))));
            for (let j = 0; j < 8; j++) c.storeV(dst, V.mul(vals[j]!, scale), j * 16);
            c.set(e, I.add(e, 32)).set(dst, I.add(dst, 128));
            c.br(0);
          });
        });
        c.for(e, e, e1, 1, () => {
          c.storeF32(dst, q4Scalar(data, scales, table, shift, e, b));
          c.set(dst, I.add(dst, 4));
        });
      },
      () => {
        c.for(r, r0, r1, 1, () => {
          c.set(dst, I.add(out, I.shl(I.mul(I.sub(r, row0), cols), 2)));
          c.if(
            I.eq(fmt, NW_INT8),
            () => {
              // fround(fround(q · SCB) · fround(1/127)): bitsandbytes' int8_vectorwise_dequant.
              c.set(src, I.add(data, I.mul(r, cols)));
              c.set(scale, V.load32Splat(I.add(scales, I.shl(r, 2))));
              vectorSteps(c, k, cols, 16, () => {
                const lanes = int8Lanes(c, V.load(I.add(src, k)), v, tmp);
                for (let j = 0; j < 4; j++) {
                  c.storeV(I.add(dst, I.shl(k, 2)), V.mul(V.mul(V.fromI32(lanes[j]!), scale), V.constF32(INV127)), j * 16);
                }
              });
              c.for(k, k, cols, 1, () => {
                c.storeF32(
                  I.add(dst, I.shl(k, 2)),
                  F32.mul(F32.mul(F32.fromI32(I.load8S(I.add(src, k))), V.lane(scale, 0)), F32.const(INV127)),
                );
              });
            },
            () => {
              // bfloat16 / float16: 4 at a time from 8 bytes, the tail one at a time through the same lanes.
              c.set(src, I.add(data, I.shl(I.mul(r, cols), 1)));
              by16BitFormat(c, fmt, [h, o, ex, t], (widen) => {
                vectorSteps(c, k, cols, 4, () => {
                  c.storeV(I.add(dst, I.shl(k, 2)), widen(V.i32FromI16LowU(V.load64Zero(I.add(src, I.shl(k, 1))))));
                });
                c.for(k, k, cols, 1, () =>
                  c.storeF32(I.add(dst, I.shl(k, 2)), V.lane(widen(V.isplat(I.load16U(I.add(src, I.shl(k, 1))))), 0)),
                );
              });
            },
          );
        });
      },
    );
  });

  // nw_gemv_task: y[r] = Σ_k x[k]·W[r, k] for rows [task·perTask, …) (perTask even for 4-bit). Several
  // accumulators per row keep the adds off one dependency chain.
  const gemv = mb.func('nw_gemv_task', [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [fmt, rows, cols, data, scales, shift, y, x, r, r1, k, src, end, bend, sp, xq, pairs, src2, sp2, rowBytes, rowScales] =
      c.localsOf(i32, 21);
    const [xs, groupEnd, table] = c.localsOf(i32, 3);
    const [v, h, o, ex, t] = c.localsOf(v128, 5);
    const acc = c.localsOf(v128, 4);
    const bacc = c.localsOf(v128, 4);
    const tmp = c.localsOf(v128, 2);
    const tail = c.local(f32);
    c.set(fmt, arg(NwArg.format)).set(rows, arg(NwArg.rows)).set(cols, arg(NwArg.cols)).set(data, arg(NwArg.data));
    c.set(scales, arg(NwArg.scales))
      .set(shift, arg(NwArg.blockShift))
      .set(y, arg(NwArg.out))
      .set(x, arg(NwArg.x))
      .set(pairs, arg(NwArg.pairs))
      .set(xs, arg(NwArg.xsplit))
      .set(table, arg(NwArg.table));
    c.set(r, I.mul(task, arg(NwArg.perTask)));
    c.set(r1, I.add(r, arg(NwArg.perTask)));
    c.set(r1, I.select(rows, r1, I.ltS(rows, r1)));
    c.if(I.geS(r, r1), () => c.ret());
    const zeroAcc = (vs: readonly Local[]) => {
      for (const a of vs) c.set(a, V.zero);
    };
    const sum4 = (vs: readonly Local[]): Expr => V.add(V.add(vs[0]!, vs[1]!), V.add(vs[2]!, vs[3]!));
    // 4-bit, blocks straddling rows (cols % blocksize ≠ 0): each row is cut at block boundaries of the flat element
    // index; per piece an odd head element, 4 elements per pair-table step, a tail, then one multiply by the absmax.
    c.if(I.and(I.eq(fmt, NW_Q4), I.ne(I.and(cols, I.sub(I.shl(1, shift), 1)), 0)), () => {
      const [e, eEnd, pEnd, nib] = c.localsOf(i32, 4);
      const [total, part] = c.localsOf(f32, 2);
      const code =
        (el: Expr): Expr =>
        (cc: Code) => {
          cc.set(nib, I.load8U(I.add(data, I.shrU(el, 1))));
          cc.set(nib, I.select(I.and(nib, 15), I.shrU(nib, 4), I.and(el, 1)));
          cc.push(F32.load(I.add(table, I.add(64, I.shl(nib, 2)))));
        };
      const scalarStep = () => {
        c.set(part, F32.add(part, F32.mul(code(e), F32.load(xq))));
        c.set(e, I.add(e, 1)).set(xq, I.add(xq, 4));
      };
      c.for(r, r, r1, 1, () => {
        c.set(e, I.mul(r, cols)).set(eEnd, I.add(e, cols)).set(xq, x);
        c.set(total, F32.const(0));
        c.block(() => {
          c.loop(() => {
            c.brIf(1, I.geU(e, eEnd));
            c.set(pEnd, I.shl(I.add(I.shrU(e, shift), 1), shift));
            c.set(pEnd, I.select(eEnd, pEnd, I.ltU(eEnd, pEnd)));
            c.set(sp, I.add(scales, I.shl(I.shrU(e, shift), 2)));
            c.set(part, F32.const(0)).set(acc[0]!, V.zero);
            c.if(I.and(e, 1), scalarStep);
            c.block(() => {
              c.loop(() => {
                c.brIf(1, I.gtU(I.add(e, 4), pEnd));
                c.set(acc[0]!, madd(pairCodes(pairs, I.add(data, I.shrU(e, 1)), 0), V.load(xq), acc[0]!));
                c.set(e, I.add(e, 4)).set(xq, I.add(xq, 16));
                c.br(0);
              });
            });
            c.block(() => {
              c.loop(() => {
                c.brIf(1, I.geU(e, pEnd));
                scalarStep();
                c.br(0);
              });
            });
            c.set(total, F32.add(total, F32.mul(F32.add(hsum(acc[0]!), part), F32.load(sp))));
            c.br(0);
          });
        });
        c.storeF32(I.add(y, I.shl(r, 2)), total);
      });
      c.ret();
    });
    c.if(
      I.eq(fmt, NW_Q4),
      () => {
        // cols % blocksize = 0. Each byte of packed data (2 elements) indexes a 2 KiB table of code pairs: two 8-byte
        // loads per 4 elements, no shuffles (a byte-plane swizzle decode is bound by its 6 shuffles per 4 elements;
        // a 65536-entry table of 4 codes misses the L2 cache on real weights, whose codes are near uniform).
        // Two rows per pass share the loads of x. Each block's Σ code·x is summed in lanes (two accumulators per
        // row), then one multiply-add by its absmax. Small steps: unrolled further, TurboFan hoists the table loads
        // and spills.
        c.set(rowBytes, I.shrU(cols, 1));
        c.set(rowScales, I.shl(I.shrU(cols, shift), 2));
        c.block(() => {
          c.loop(() => {
            c.brIf(1, I.geS(r, r1));
            // The second row of a pass; the last row of an odd count pairs with itself (its copy is not stored).
            const pair = I.ltS(I.add(r, 1), r1);
            c.set(src, I.add(data, I.mul(r, rowBytes)));
            c.set(end, I.add(src, rowBytes));
            c.set(src2, I.select(I.add(src, rowBytes), src, pair));
            c.set(sp, I.add(scales, I.mul(r, rowScales)));
            c.set(sp2, I.select(I.add(sp, rowScales), sp, pair));
            c.set(xq, x);
            c.set(acc[0]!, V.zero).set(acc[1]!, V.zero);
            c.doWhile(
              () => {
                zeroAcc(bacc);
                c.set(bend, I.add(src, I.shl(1, I.sub(shift, 1))));
                c.doWhile(
                  () => {
                    for (let j = 0; j < 2; j++) {
                      c.set(h, V.load(xq, j * 16));
                      for (const [row, at] of [src, src2].entries()) {
                        const a = bacc[2 * row + j]!;
                        c.set(a, madd(pairCodes(pairs, at, 2 * j), h, a));
                      }
                    }
                    c.set(src, I.add(src, 4)).set(src2, I.add(src2, 4)).set(xq, I.add(xq, 32));
                  },
                  I.ltU(src, bend),
                );
                c.set(acc[0]!, madd(V.add(bacc[0]!, bacc[1]!), V.load32Splat(sp), acc[0]!));
                c.set(acc[1]!, madd(V.add(bacc[2]!, bacc[3]!), V.load32Splat(sp2), acc[1]!));
                c.set(sp, I.add(sp, 4)).set(sp2, I.add(sp2, 4));
              },
              I.ltU(src, end),
            );
            c.storeF32(I.add(y, I.shl(r, 2)), hsum(acc[0]!));
            c.if(pair, () => c.storeF32(I.add(y, I.shl(r, 2)), hsum(acc[1]!), 4));
            c.set(r, I.add(r, 2));
            c.br(0);
          });
        });
      },
      () =>
        c.if(
          I.eq(fmt, NW_INT8),
          () =>
            c.for(r, r, r1, 1, () => {
              zeroAcc(acc);
              c.set(tail, F32.const(0));
              c.set(src, I.add(data, I.mul(r, cols)));
              vectorSteps(c, k, cols, 16, () => {
                const lanes = int8Lanes(c, V.load(I.add(src, k)), v, tmp);
                for (let j = 0; j < 4; j++) c.set(acc[j]!, madd(V.fromI32(lanes[j]!), V.load(I.add(x, I.shl(k, 2)), j * 16), acc[j]!));
              });
              c.for(k, k, cols, 1, () => {
                c.set(tail, F32.add(tail, F32.mul(F32.fromI32(I.load8S(I.add(src, k))), F32.load(I.add(x, I.shl(k, 2))))));
              });
              // Σ q·x, then · SCB · (1/127) once per row.
              c.storeF32(
                I.add(y, I.shl(r, 2)),
                F32.mul(F32.mul(F32.add(hsum(sum4(acc)), tail), F32.load(I.add(scales, I.shl(r, 2)))), F32.const(INV127)),
              );
            }),
          () =>
            by16BitFormat(c, fmt, [h, o, ex, t], (widen, even, odd) => {
              // x is split by parity per group of 8 (xsplit): a 16-byte load of W holds 8 elements, two per i32
              // lane, widened to the even and the odd ones by one op each. One row at a time, 32 elements per
              // step (four accumulators): W is read as one sequential stream (several rows in lockstep, sharing
              // the loads of x, ran at 0.6× on the 2048-wide rows of an LM head out of DRAM). e·x_even + o·x_odd
              // is summed before it meets its accumulator: fewer live registers, and TurboFan spills past 15
              // (a spilled accumulator puts a store-to-load round trip on the loop's critical path).
              const step = (u: number) => {
                c.set(v, V.load(I.add(src, k), 16 * u));
                c.set(acc[u]!, V.add(acc[u]!, madd(odd(v), V.load(xq, 32 * u + 16), V.mul(even(v), V.load(xq, 32 * u)))));
              };
              c.set(groupEnd, I.shl(I.shrU(cols, 3), 4));
              // Rows of ≥ 8192 elements: four rows in lockstep sharing the loads of x. One such row's split x is
              // 32 KiB (all of L1), re-read per row; out of DRAM that ran at 4.9 G elements/s one row at a time
              // and 8.3 four at a time (8192×8192), while rows of ≤ 4096 elements are faster one at a time
              // (12.3 vs 6.7 at 2048 wide, 7.8 vs 6.8 at 4096).
              const R = 4;
              const srcs = c.localsOf(i32, R);
              const tails = c.localsOf(f32, R);
              const rowBytes16 = c.local(i32);
              const lockstep = () =>
                c.block(() => {
                  c.loop(() => {
                    c.brIf(1, I.geS(r, r1));
                    // Rows past r1 (the last pass of a count not a multiple of 4) re-read row r; not stored.
                    c.set(srcs[0]!, I.add(data, I.mul(r, rowBytes16)));
                    for (let i = 1; i < R; i++) {
                      c.set(srcs[i]!, I.select(I.add(srcs[0]!, I.mul(rowBytes16, i)), srcs[0]!, I.ltS(I.add(r, i), r1)));
                    }
                    zeroAcc(acc);
                    c.set(k, 0).set(xq, xs);
                    c.block(() => {
                      c.loop(() => {
                        c.brIf(1, I.geU(k, groupEnd));
                        c.set(tmp[0]!, V.load(xq));
                        c.set(tmp[1]!, V.load(xq, 16));
                        for (let i = 0; i < R; i++) {
                          c.set(v, V.load(I.add(srcs[i]!, k)));
                          c.set(acc[i]!, V.add(acc[i]!, madd(odd(v), tmp[1]!, V.mul(even(v), tmp[0]!))));
                        }
                        c.set(k, I.add(k, 16)).set(xq, I.add(xq, 32));
                        c.br(0);
                      });
                    });
                    for (const tl of tails) c.set(tl, F32.const(0));
                    c.for(k, I.shrU(groupEnd, 1), cols, 1, () => {
                      c.set(tail, F32.load(I.add(x, I.shl(k, 2))));
                      for (let i = 0; i < R; i++) {
                        const wv = V.lane(widen(V.isplat(I.load16U(I.add(srcs[i]!, I.shl(k, 1))))), 0);
                        c.set(tails[i]!, F32.add(tails[i]!, F32.mul(wv, tail)));
                      }
                    });
                    c.storeF32(I.add(y, I.shl(r, 2)), F32.add(hsum(acc[0]!), tails[0]!));
                    for (let i = 1; i < R; i++) {
                      c.if(I.ltS(I.add(r, i), r1), () => c.storeF32(I.add(y, I.shl(r, 2)), F32.add(hsum(acc[i]!), tails[i]!), 4 * i));
                    }
                    c.set(r, I.add(r, R));
                    c.br(0);
                  });
                });
              c.set(rowBytes16, I.shl(cols, 1));
              c.if(I.geS(cols, 8192), () => {
                lockstep();
                c.ret();
              });
              c.for(r, r, r1, 1, () => {
                c.set(src, I.add(data, I.shl(I.mul(r, cols), 1)));
                zeroAcc(acc);
                c.set(k, 0).set(xq, xs);
                c.block(() => {
                  c.loop(() => {
                    c.brIf(1, I.gtU(I.add(k, 64), groupEnd));
                    for (let u = 0; u < 4; u++) step(u);
                    c.set(k, I.add(k, 64)).set(xq, I.add(xq, 128));
                    c.br(0);
                  });
                });
                c.block(() => {
                  c.loop(() => {
                    c.brIf(1, I.geU(k, groupEnd));
                    step(0);
                    c.set(k, I.add(k, 16)).set(xq, I.add(xq, 32));
                    c.br(0);
                  });
                });
                // The last cols % 8 elements, one at a time.
                c.set(tail, F32.const(0));
                c.for(k, I.shrU(groupEnd, 1), cols, 1, () => {
                  const wv = V.lane(widen(V.isplat(I.load16U(I.add(src, I.shl(k, 1))))), 0);
                  c.set(tail, F32.add(tail, F32.mul(wv, F32.load(I.add(x, I.shl(k, 2))))));
                });
                c.storeF32(I.add(y, I.shl(r, 2)), F32.add(hsum(sum4(acc)), tail));
              });
            }),
        ),
    );
  });

  // nw_xsplit_task (one task): x [cols] → xsplit, per group of 8 elements its 4 even ones then its 4 odd ones.
  const xsplit = mb.func('nw_xsplit_task', [i32, i32, i32], [], (c, [, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [src, dst, end] = c.localsOf(i32, 3);
    const [a, b] = c.localsOf(v128, 2);
    c.set(src, arg(NwArg.x)).set(dst, arg(NwArg.xsplit));
    c.set(end, I.add(src, I.shl(I.shrU(arg(NwArg.cols), 3), 5)));
    c.forU(src, src, end, 32, () => {
      c.set(a, V.load(src)).set(b, V.load(src, 16));
      c.storeV(dst, V.shuffle(a, b, EVEN_LANES));
      c.storeV(dst, V.shuffle(a, b, ODD_LANES), 16);
      c.set(dst, I.add(dst, 32));
    });
  });
  return { decode, gemv, xsplit };
}
