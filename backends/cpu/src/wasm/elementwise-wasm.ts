/**
 * Elementwise kernels and reductions on float32 in the wasm heap: memory-bound loops, four lanes at a time,
 * split into tasks of rows (or row chunks) so large ones run on every thread.
 *
 * Results match the typed-array reference bit for bit where it computes one IEEE operation per element
 * (+, −, ×, ÷, √, min, max, comparisons: a float32 operation is the float64 one rounded once), and affine,
 * rsqrt and doraCompose run in float64 lanes (f64x2) as the reference does, so they round once too. Sums
 * add float32 partial sums of 64-element blocks in float64 (along a row) or accumulate in float64 lanes
 * (down columns); max/min propagate NaN as Math.max/min do.
 */
import { type Code, type Expr, f32 as f32Type, F32, f64, F64, I, i32, type Local, type ModuleBuilder, V, v128 } from './encoder.js';
import { ERF_T, vErf, vErfcTail, vExp, vLog, vPoly, vTanh } from './cephes.js';
import { BINARY_OPS, REDUCE_OPS, UNARY_OPS, type WasmBinaryOp, type WasmReduceOp, type WasmUnaryOp } from './elementwise-ops.js';

export {
  BINARY_OPS,
  isWasmBinary,
  isWasmUnary,
  REDUCE_OPS,
  UNARY_OPS,
  type WasmBinaryOp,
  type WasmReduceOp,
  type WasmUnaryOp,
} from './elementwise-ops.js';

/**
 * Binary/where argument block. Row r of the output (n elements, at out + r·n) combines a from
 * a + offsA[r]·4 with stride sa (1, or 0 for a broadcast value) and b likewise.
 */
export const EwArg = {
  rows: 0,
  n: 1,
  a: 2,
  b: 3,
  out: 4,
  /** Byte addresses of the Int32 row-offset tables (elements). */
  offsA: 5,
  offsB: 6,
  /** 0: both strides 1; 1: b broadcast (stride 0); 2: a broadcast; 3: both. */
  strides: 7,
  rowsPerTask: 8,
  /** The total element count: the last row may be shorter than n (a chunked single row). */
  total: 9,
  words: 10,
} as const;

/** Unary / affine / doraCompose argument block: n elements, `perTask` per task (a multiple of 4). */
export const MapArg = {
  n: 0,
  x: 1,
  out: 2,
  perTask: 3,
  /** doraCompose: lora, g, bias (0: none), and the row length `cols` of g/bias. */
  lora: 4,
  g: 5,
  bias: 6,
  cols: 7,
  /** affine: scale and offset (float64 at byte offsets 64 and 72 of the block); doraCompose: scale at 64. */
  words: 8,
} as const;
export const MAP_F64_AT = 64;

/** Reduction argument block: x viewed [outer, len, inner]; out [outer, inner]. */
export const RedArg = {
  outer: 0,
  len: 1,
  inner: 2,
  x: 3,
  out: 4,
  /** Outer rows per task (inner = 1), or inner columns per task (inner > 1, a multiple of 4). */
  perTask: 5,
  /** inner > 1: float64 accumulator scratch, one per inner column. */
  acc: 6,
  /** sum: the float64 factor applied before rounding (1, or 1/len for a mean) at byte offset 64. */
  words: 7,
} as const;
export const RED_SCALE_AT = 64;

const minS = (a: Expr, b: Expr): Expr => I.select(a, b, I.ltS(a, b));

/** Task names this file adds to the module. */
export function elementwiseTaskNames(): string[] {
  return [
    ...BINARY_OPS.map((op) => `ew_${op}`),
    ...UNARY_OPS.map((op) => `un_${op}`),
    'map_affine',
    'map_dora_compose',
    ...REDUCE_OPS.flatMap((op) => [`red_rows_${op}`, `red_cols_${op}`]),
    'softmax_rows',
    'log_softmax_rows',
  ];
}

export function emitElementwise(mb: ModuleBuilder): void {
  for (const op of BINARY_OPS) emitBinary(mb, op);
  for (const op of UNARY_OPS) emitUnary(mb, op);
  emitAffine(mb);
  emitDoraCompose(mb);
  for (const op of REDUCE_OPS) {
    emitReduceRows(mb, op);
    emitReduceCols(mb, op);
  }
  emitSoftmax(mb);
}

/**
 * softmax (or log-softmax) over each of `outer` rows of `len` (RedArg block): shifted by the row maximum
 * (NaN-propagating, so a row with NaN, +∞ or only −∞ comes out NaN as the reference's does), e^(x − max)
 * with the float32 exp, summed in float64 lanes. softmax then scales by the rounded reciprocal of the sum;
 * log-softmax subtracts ln(sum) from x − max in float64 lanes and rounds once, as the reference does.
 */
function emitSoftmax(mb: ModuleBuilder): void {
  for (const log of [false, true]) {
    mb.func(log ? 'log_softmax_rows' : 'softmax_rows', [i32, i32, i32], [], (c, [task, args]) => {
      const arg = (w: number): Expr => I.load(args, w * 4);
      const [r, r1, len, x0, o0, p, q, bend, vend, end] = c.localsOf(i32, 10);
      const acc = c.localsOf(v128, 4) as Local[];
      const [mv, e, t, lo, hi, tmp, sum, inv] = c.localsOf(v128, 8);
      const m = c.local(f32Type);
      const s = c.local(f32Type);
      const tot = c.local(f64);
      c.set(len, arg(RedArg.len));
      forTaskRows(c, args, task, r, r1, () => {
        c.set(x0, I.add(arg(RedArg.x), I.shl(I.mul(r, len), 2)));
        c.set(o0, I.add(arg(RedArg.out), I.shl(I.mul(r, len), 2)));
        c.set(end, I.add(x0, I.shl(len, 2)));
        c.set(bend, I.add(x0, I.shl(I.and(len, -16), 2)));
        c.set(vend, I.add(x0, I.shl(I.and(len, -4), 2)));
        // The row maximum.
        c.set(m, F32.load(x0));
        for (const a of acc) c.set(a, V.splat(m));
        c.forU(p, x0, bend, 64, () => {
          for (let k = 0; k < 4; k++) c.set(acc[k]!, V.max(acc[k]!, V.load(p, k * 16)));
        });
        c.forU(p, p, vend, 16, () => c.set(acc[0]!, V.max(acc[0]!, V.load(p))));
        c.forU(p, p, end, 4, () => c.set(m, F32.max(m, F32.load(p))));
        c.set(acc[0]!, V.max(V.max(acc[0]!, acc[1]!), V.max(acc[2]!, acc[3]!)));
        c.set(m, F32.max(F32.max(F32.max(V.lane(acc[0]!, 0), V.lane(acc[0]!, 1)), F32.max(V.lane(acc[0]!, 2), V.lane(acc[0]!, 3))), m));
        c.set(mv, V.splat(m));
        // e = e^(x − max) and its sum in float64 lanes; softmax keeps e in place of the result.
        c.set(sum, V.zero);
        c.set(q, o0);
        c.forU(p, x0, vend, 16, () => {
          c.set(t, V.sub(V.load(p), mv));
          c.set(e, vExp(t, t));
          if (!log) c.storeV(q, e);
          widen(c, e, lo, hi, tmp);
          c.set(sum, V.dadd(sum, V.dadd(lo, hi)));
          c.set(q, I.add(q, 16));
        });
        c.set(tot, F64.add(V.dlane(sum, 0), V.dlane(sum, 1)));
        c.forU(p, p, end, 4, () => {
          c.set(t, V.splat(F32.sub(F32.load(p), m)));
          c.set(s, V.lane(vExp(t, t), 0));
          if (!log) c.storeF32(q, s);
          c.set(tot, F64.add(tot, F64.promote(s)));
          c.set(q, I.add(q, 4));
        });
        if (!log) {
          c.set(inv, V.splat(F32.demote(F64.div(F64.const(1), tot))));
          c.forU(q, o0, I.add(o0, I.shl(I.and(len, -4), 2)), 16, () => c.storeV(q, V.mul(V.load(q), inv)));
          c.forU(q, q, I.add(o0, I.shl(len, 2)), 4, () => c.storeF32(q, F32.mul(F32.load(q), V.lane(inv, 0))));
          return;
        }
        // out = (x − max) − ln(sum), in float64 lanes: inv holds (max + ln sum) twice.
        c.set(tot, F64.add(F64.promote(m), lnF64(c, tot)));
        c.set(inv, V.dsplat(tot));
        c.set(q, o0);
        c.forU(p, x0, vend, 16, () => {
          widen(c, V.load(p), lo, hi, tmp);
          c.storeV(q, narrow(V.dsub(lo, inv), V.dsub(hi, inv)));
          c.set(q, I.add(q, 16));
        });
        c.forU(p, p, end, 4, () => {
          c.storeF32(q, F32.demote(F64.sub(F64.promote(F32.load(p)), tot)));
          c.set(q, I.add(q, 4));
        });
      });
    });
  }
}

/**
 * ln(s) in float64 for the sum of a softmax row (s ≥ 1, or NaN): s = 2^k·f with f in [1, 2) by exact halvings,
 * then ln f = 2·atanh(z), z = (f − 1)/(f + 1) < 1/3, by its odd series to 1e-17. Once per row, so a loop is fine.
 */
function lnF64(c: Code, s: Local): Expr {
  const f = c.local(f64);
  const k = c.local(f64);
  const z = c.local(f64);
  const z2 = c.local(f64);
  const term = c.local(f64);
  const acc = c.local(f64);
  const n = c.local(i32);
  c.set(f, s).set(k, F64.const(0));
  c.block(() => {
    c.loop(() => {
      c.brIf(1, I.eqz(F64.ge(f, F64.const(2))));
      c.set(f, F64.mul(f, F64.const(0.5)));
      c.set(k, F64.add(k, F64.const(1)));
      c.br(0);
    });
  });
  c.set(z, F64.div(F64.sub(f, F64.const(1)), F64.add(f, F64.const(1))));
  c.set(z2, F64.mul(z, z));
  c.set(term, z).set(acc, F64.const(0));
  // Σ z^(2n+1)/(2n+1) for n < 18: the first omitted term is below 3^-37 / 37.
  c.for(n, 0, 18, 1, () => {
    c.set(acc, F64.add(acc, F64.div(term, F64.fromI32(I.add(I.shl(n, 1), 1)))));
    c.set(term, F64.mul(term, z2));
  });
  return F64.add(F64.mul(k, F64.const(Math.LN2)), F64.mul(F64.const(2), acc));
}

function vBinary(op: WasmBinaryOp, a: Expr, b: Expr): Expr {
  switch (op) {
    case 'add':
      return V.add(a, b);
    case 'sub':
      return V.sub(a, b);
    case 'mul':
      return V.mul(a, b);
    case 'div':
      return V.div(a, b);
    case 'max':
      return V.max(a, b);
    case 'min':
      return V.min(a, b);
    case 'greater':
      return V.and(V.gt(a, b), V.constF32(1));
    case 'equal':
      return V.and(V.eq(a, b), V.constF32(1));
  }
}

function sBinary(op: WasmBinaryOp, a: Expr, b: Expr): Expr {
  switch (op) {
    case 'add':
      return F32.add(a, b);
    case 'sub':
      return F32.sub(a, b);
    case 'mul':
      return F32.mul(a, b);
    case 'div':
      return F32.div(a, b);
    case 'max':
      return F32.max(a, b);
    case 'min':
      return F32.min(a, b);
    case 'greater':
      return F32.fromI32(F32.gt(a, b));
    case 'equal':
      return F32.fromI32(F32.eq(a, b));
  }
}

function emitBinary(mb: ModuleBuilder, op: WasmBinaryOp): void {
  mb.func(`ew_${op}`, [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [r, r1, n, len, pa, pb, po, end, vend, strides] = c.localsOf(i32, 10);
    const va = c.local(v128);
    const vb = c.local(v128);
    c.set(n, arg(EwArg.n)).set(strides, arg(EwArg.strides));
    c.set(r, I.mul(task, arg(EwArg.rowsPerTask)));
    c.set(r1, minS(arg(EwArg.rows), I.add(r, arg(EwArg.rowsPerTask))));
    c.for(r, r, r1, 1, () => {
      c.set(len, minS(n, I.sub(arg(EwArg.total), I.mul(r, n))));
      c.set(pa, I.add(arg(EwArg.a), I.shl(I.load(I.add(arg(EwArg.offsA), I.shl(r, 2))), 2)));
      c.set(pb, I.add(arg(EwArg.b), I.shl(I.load(I.add(arg(EwArg.offsB), I.shl(r, 2))), 2)));
      c.set(po, I.add(arg(EwArg.out), I.shl(I.mul(r, n), 2)));
      c.set(end, I.add(po, I.shl(len, 2)));
      c.set(vend, I.add(po, I.shl(I.and(len, -4), 2)));
      // One loop per stride pattern, so the hot loop has no branch.
      const loop = (sa: 0 | 1, sb: 0 | 1) => () => {
        if (!sa) c.set(va, V.load32Splat(pa));
        if (!sb) c.set(vb, V.load32Splat(pb));
        c.block(() => {
          c.brIf(0, I.geU(po, vend));
          c.doWhile(
            () => {
              c.storeV(po, vBinary(op, sa ? V.load(pa) : va, sb ? V.load(pb) : vb));
              if (sa) c.set(pa, I.add(pa, 16));
              if (sb) c.set(pb, I.add(pb, 16));
              c.set(po, I.add(po, 16));
            },
            I.ltU(po, vend),
          );
        });
        c.block(() => {
          c.brIf(0, I.geU(po, end));
          c.doWhile(
            () => {
              c.storeF32(po, sBinary(op, F32.load(pa), F32.load(pb)));
              if (sa) c.set(pa, I.add(pa, 4));
              if (sb) c.set(pb, I.add(pb, 4));
              c.set(po, I.add(po, 4));
            },
            I.ltU(po, end),
          );
        });
      };
      c.if(I.eq(strides, 0), loop(1, 1), () => c.if(I.eq(strides, 1), loop(1, 0), () => c.if(I.eq(strides, 2), loop(0, 1), loop(0, 0))));
    });
  });
}

/** The op on a float32x4 `x`; `t` is a scratch vector local. */
function vUnary(op: WasmUnaryOp, x: Local, t: Local, c: Code): Expr {
  const one = V.constF32(1);
  switch (op) {
    case 'neg':
      return V.neg(x);
    case 'abs':
      return V.abs(x);
    case 'sqrt':
      return V.sqrt(x);
    case 'rsqrt': {
      // In float64 lanes, as the reference computes 1 / Math.sqrt(x): one rounding.
      c.set(t, V.shuffle(x, x, [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]));
      return V.shuffle(
        V.demoteZero(V.ddiv(V.dsplat(F64.const(1)), V.dsqrt(V.promoteLow(x)))),
        V.demoteZero(V.ddiv(V.dsplat(F64.const(1)), V.dsqrt(V.promoteLow(t)))),
        [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
      );
    }
    case 'reciprocal':
      return V.div(one, x);
    case 'square':
      return V.mul(x, x);
    case 'relu':
      // max(x, +0) keeps NaN and maps −0 to +0, as `x > 0 || x !== x ? x : 0` does.
      return V.max(x, V.zero);
    case 'step':
      // 1 above zero, NaN stays NaN, else 0.
      return V.bitselect(x, V.and(V.gt(x, V.zero), one), V.ne(x, x));
    case 'sign':
      return V.bitselect(one, V.bitselect(V.constF32(-1), x, V.lt(x, V.zero)), V.gt(x, V.zero));
    case 'isFinite':
      return V.and(V.lt(V.abs(x), V.constF32(Infinity)), one);
    case 'exp':
      return vExp(x, t);
    case 'sigmoid':
      c.set(t, V.neg(x));
      return V.div(one, V.add(one, vExp(t, t)));
    case 'silu': {
      // x / (1 + e^−x), and −0 at −∞ as the reference has it (−∞/∞ would be NaN).
      c.set(t, V.neg(x));
      const q = V.div(x, V.add(one, vExp(t, t)));
      return V.bitselect(V.constF32(-0), q, V.eq(x, V.constF32(-Infinity)));
    }
    case 'log':
      return vLog(c, x);
    case 'erf':
      return vErf(c, x, t);
    case 'gelu': {
      // ½·x·erfc(−x/√2) as the reference: the far negative tail is erfc's own small value, no cancellation.
      const y = c.local(v128);
      const a = c.local(v128);
      c.set(y, V.mul(x, V.constF32(-Math.SQRT1_2)));
      c.set(a, V.abs(x));
      c.set(t, vErfcTail(c, a, 0.5));
      const near = V.sub(one, V.mul(y, vPoly(V.mul(y, y), ERF_T)));
      const far = V.bitselect(V.sub(V.constF32(2), t), t, V.lt(y, V.zero));
      const q = V.mul(V.mul(V.constF32(0.5), x), V.bitselect(near, far, V.lt(V.abs(y), one)));
      return V.bitselect(V.constF32(-0), q, V.eq(x, V.constF32(-Infinity)));
    }
    case 'tanh':
      return vTanh(c, x, t);
    case 'geluTanh': {
      // x·½(1 + tanh u) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³): with E = e^−|2u| ≤ 1 (never overflows),
      // x/(1 + E) for u ≥ 0 and x·E/(1 + E) below, so the far negative tail keeps its relative accuracy
      // down to subnormals; −0 at −∞ as the reference.
      const v = c.local(v128);
      c.set(v, V.mul(V.constF32(2 * Math.sqrt(2 / Math.PI)), V.add(x, V.mul(V.constF32(0.044715), V.mul(x, V.mul(x, x))))));
      c.set(t, V.neg(V.abs(v)));
      c.set(t, vExp(t, t));
      const q = V.div(V.bitselect(V.mul(x, t), x, V.lt(v, V.zero)), V.add(one, t));
      return V.bitselect(V.constF32(-0), q, V.eq(x, V.constF32(-Infinity)));
    }
  }
}

/** The op on one float32 value, or null for ops whose tail element goes through the vector code. */
function sUnary(op: WasmUnaryOp, x: Local): Expr | null {
  switch (op) {
    case 'neg':
      return F32.neg(x);
    case 'abs':
      return F32.abs(x);
    case 'sqrt':
      return F32.sqrt(x);
    case 'rsqrt':
      return F32.demote(F64.div(F64.const(1), F64.sqrt(F64.promote(x))));
    case 'reciprocal':
      return F32.div(F32.const(1), x);
    case 'square':
      return F32.mul(x, x);
    case 'relu':
      return F32.max(x, F32.const(0));
    case 'step':
      return I.select(x, F32.fromI32(F32.gt(x, F32.const(0))), F32.ne(x, x));
    case 'sign':
      return I.select(F32.const(1), I.select(F32.const(-1), x, F32.lt(x, F32.const(0))), F32.gt(x, F32.const(0)));
    case 'isFinite':
      return F32.fromI32(F32.lt(F32.abs(x), F32.const(Infinity)));
    case 'exp':
    case 'sigmoid':
    case 'silu':
    case 'tanh':
    case 'geluTanh':
    case 'log':
    case 'erf':
    case 'gelu':
      return null;
  }
}

/** Loops over [i0, i1) of n elements: a vector body over whole vectors, a scalar body for the rest. */
function mapLoop(c: Code, args: Local, task: Local, vector: (off: Local) => void, scalar: (off: Local) => void): void {
  const [i, i1, vend] = c.localsOf(i32, 3);
  c.set(i, I.mul(task, I.load(args, MapArg.perTask * 4)));
  c.set(i1, minS(I.load(args, MapArg.n * 4), I.add(i, I.load(args, MapArg.perTask * 4))));
  c.set(vend, I.add(i, I.and(I.sub(i1, i), -4)));
  c.for(i, i, vend, 4, () => vector(i));
  c.for(i, i, i1, 1, () => scalar(i));
}

function emitUnary(mb: ModuleBuilder, op: WasmUnaryOp): void {
  mb.func(`un_${op}`, [i32, i32, i32], [], (c, [task, args]) => {
    const [x0, o0] = c.localsOf(i32, 2);
    const x = c.local(v128);
    const t = c.local(v128);
    const s = c.local(f32Type);
    c.set(x0, I.load(args, MapArg.x * 4)).set(o0, I.load(args, MapArg.out * 4));
    mapLoop(
      c,
      args,
      task,
      (i) => {
        c.set(x, V.load(I.add(x0, I.shl(i, 2))));
        c.storeV(I.add(o0, I.shl(i, 2)), vUnary(op, x, t, c));
      },
      (i) => {
        c.set(s, F32.load(I.add(x0, I.shl(i, 2))));
        const scalar = sUnary(op, s);
        if (scalar) c.storeF32(I.add(o0, I.shl(i, 2)), scalar);
        else {
          c.set(x, V.splat(s));
          c.storeF32(I.add(o0, I.shl(i, 2)), V.lane(vUnary(op, x, t, c), 0));
        }
      },
    );
  });
}

/** Two float64x2 halves of a float32x4 (`hi` gets lanes 2, 3). */
function widen(c: Code, x: Expr, lo: Local, hi: Local, tmp: Local): void {
  c.set(tmp, x);
  c.set(lo, V.promoteLow(tmp));
  c.set(hi, V.promoteLow(V.shuffle(tmp, tmp, [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15])));
}

/** float32x4 from two float64x2 halves (each rounded once). */
function narrow(lo: Expr, hi: Expr): Expr {
  return V.shuffle(V.demoteZero(lo), V.demoteZero(hi), [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
}

function emitAffine(mb: ModuleBuilder): void {
  mb.func('map_affine', [i32, i32, i32], [], (c, [task, args]) => {
    const [x0, o0] = c.localsOf(i32, 2);
    const [lo, hi, tmp, sc, of] = c.localsOf(v128, 5);
    const s = c.local(f64);
    const o = c.local(f64);
    c.set(x0, I.load(args, MapArg.x * 4)).set(o0, I.load(args, MapArg.out * 4));
    c.set(s, F64.load(args, MAP_F64_AT)).set(o, F64.load(args, MAP_F64_AT + 8));
    c.set(sc, V.dsplat(s)).set(of, V.dsplat(o));
    mapLoop(
      c,
      args,
      task,
      (i) => {
        widen(c, V.load(I.add(x0, I.shl(i, 2))), lo, hi, tmp);
        c.storeV(I.add(o0, I.shl(i, 2)), narrow(V.dadd(V.dmul(lo, sc), of), V.dadd(V.dmul(hi, sc), of)));
      },
      (i) => c.storeF32(I.add(o0, I.shl(i, 2)), F32.demote(F64.add(F64.mul(F64.promote(F32.load(I.add(x0, I.shl(i, 2)))), s), o))),
    );
  });
}

function emitDoraCompose(mb: ModuleBuilder): void {
  // y = bias + g ⊙ (base + s·lora), g and bias indexed by the column (i mod cols), in float64 lanes.
  mb.func('map_dora_compose', [i32, i32, i32], [], (c, [task, args]) => {
    const [x0, l0, g0, b0, o0, cols, col, i, i1] = c.localsOf(i32, 9);
    const [blo, bhi, llo, lhi, glo, ghi, clo, chi, tmp, sc] = c.localsOf(v128, 10);
    const s = c.local(f64);
    c.set(x0, I.load(args, MapArg.x * 4))
      .set(o0, I.load(args, MapArg.out * 4))
      .set(l0, I.load(args, MapArg.lora * 4));
    c.set(g0, I.load(args, MapArg.g * 4))
      .set(b0, I.load(args, MapArg.bias * 4))
      .set(cols, I.load(args, MapArg.cols * 4));
    c.set(s, F64.load(args, MAP_F64_AT)).set(sc, V.dsplat(s));
    // Tasks are whole rows (perTask a multiple of cols), so vectors never straddle a row when cols % 4 = 0.
    c.set(i, I.mul(task, I.load(args, MapArg.perTask * 4)));
    c.set(i1, minS(I.load(args, MapArg.n * 4), I.add(i, I.load(args, MapArg.perTask * 4))));
    c.set(col, 0);
    const at = (base: Expr, k: Expr) => I.add(base, I.shl(k, 2));
    c.if(
      I.eqz(I.and(cols, 3)),
      () => {
        c.for(i, i, i1, 4, () => {
          widen(c, V.load(at(x0, i)), blo, bhi, tmp);
          widen(c, V.load(at(l0, i)), llo, lhi, tmp);
          widen(c, V.load(at(g0, col)), glo, ghi, tmp);
          c.set(blo, V.dmul(glo, V.dadd(blo, V.dmul(llo, sc))));
          c.set(bhi, V.dmul(ghi, V.dadd(bhi, V.dmul(lhi, sc))));
          c.if(b0, () => {
            widen(c, V.load(at(b0, col)), clo, chi, tmp);
            c.set(blo, V.dadd(clo, blo));
            c.set(bhi, V.dadd(chi, bhi));
          });
          c.storeV(at(o0, i), narrow(blo, bhi));
          c.set(col, I.add(col, 4));
          c.if(I.eq(col, cols), () => c.set(col, 0));
        });
      },
      () => {
        const v = c.local(f64);
        c.for(i, i, i1, 1, () => {
          c.set(
            v,
            F64.mul(
              F64.promote(F32.load(at(g0, col))),
              F64.add(F64.promote(F32.load(at(x0, i))), F64.mul(s, F64.promote(F32.load(at(l0, i))))),
            ),
          );
          c.if(b0, () => c.set(v, F64.add(F64.promote(F32.load(at(b0, col))), v)));
          c.storeF32(at(o0, i), F32.demote(v));
          c.set(col, I.add(col, 1));
          c.if(I.eq(col, cols), () => c.set(col, 0));
        });
      },
    );
  });
}

/** body() for each row r of this task: [task·perTask, min(outer, (task + 1)·perTask)) of the RedArg block. */
function forTaskRows(c: Code, args: Local, task: Local, r: Local, r1: Local, body: () => void): void {
  c.set(r, I.mul(task, I.load(args, RedArg.perTask * 4)));
  c.set(r1, minS(I.load(args, RedArg.outer * 4), I.add(r, I.load(args, RedArg.perTask * 4))));
  c.for(r, r, r1, 1, body);
}

/** Reduce each of `outer` contiguous rows of `len` (inner = 1). */
function emitReduceRows(mb: ModuleBuilder, op: WasmReduceOp): void {
  mb.func(`red_rows_${op}`, [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [r, r1, len, p, bend, vend, end] = c.localsOf(i32, 7);
    const acc = c.localsOf(v128, 4) as Local[];
    const [wlo, whi, tmp] = c.localsOf(v128, 3);
    const tot = c.local(f64);
    const s = c.local(f32Type);
    c.set(len, arg(RedArg.len));
    forTaskRows(c, args, task, r, r1, () => {
      c.set(p, I.add(arg(RedArg.x), I.shl(I.mul(r, len), 2)));
      c.set(end, I.add(p, I.shl(len, 2)));
      c.set(bend, I.add(p, I.shl(I.and(len, op === 'sum' ? -64 : -16), 2)));
      c.set(vend, I.add(p, I.shl(I.and(len, -4), 2)));
      // Four independent accumulators over 64-byte blocks: one chain would be bound by the latency of the
      // operation, not by reading memory.
      if (op === 'sum') {
        // float32 lanes within a 64-element block (16 terms per lane), each block's sum then added in
        // float64: as accurate as the reference's float64 sum for any realistic length, and one vector add
        // per 16 bytes, so the loop runs at memory speed.
        c.set(tot, F64.const(0));
        c.forU(p, p, bend, 256, () => {
          for (const x of acc) c.set(x, V.zero);
          for (let q = 0; q < 16; q++) c.set(acc[q % 4]!, V.add(acc[q % 4]!, V.load(p, q * 16)));
          widen(c, V.add(V.add(acc[0]!, acc[1]!), V.add(acc[2]!, acc[3]!)), wlo, whi, tmp);
          c.set(wlo, V.dadd(wlo, whi));
          c.set(tot, F64.add(tot, F64.add(V.dlane(wlo, 0), V.dlane(wlo, 1))));
        });
        c.forU(p, p, end, 4, () => c.set(tot, F64.add(tot, F64.promote(F32.load(p)))));
        c.storeF32(I.add(arg(RedArg.out), I.shl(r, 2)), F32.demote(F64.mul(tot, F64.load(args, RED_SCALE_AT))));
      } else {
        const vop = op === 'max' ? V.max : V.min;
        const sop = op === 'max' ? F32.max : F32.min;
        c.set(s, F32.load(p));
        for (const x of acc) c.set(x, V.splat(s));
        c.forU(p, p, bend, 64, () => {
          for (let q = 0; q < 4; q++) c.set(acc[q]!, vop(acc[q]!, V.load(p, q * 16)));
        });
        c.forU(p, p, vend, 16, () => c.set(acc[0]!, vop(acc[0]!, V.load(p))));
        c.forU(p, p, end, 4, () => c.set(s, sop(s, F32.load(p))));
        c.set(acc[0]!, vop(vop(acc[0]!, acc[1]!), vop(acc[2]!, acc[3]!)));
        c.storeF32(
          I.add(arg(RedArg.out), I.shl(r, 2)),
          sop(sop(sop(V.lane(acc[0]!, 0), V.lane(acc[0]!, 1)), sop(V.lane(acc[0]!, 2), V.lane(acc[0]!, 3))), s),
        );
      }
    });
  });
}

/** Reduce x [outer, len, inner] over len for inner > 1; a task takes `perTask` inner columns of every outer. */
function emitReduceCols(mb: ModuleBuilder, op: WasmReduceOp): void {
  mb.func(`red_cols_${op}`, [i32, i32, i32], [], (c, [task, args]) => {
    const arg = (w: number): Expr => I.load(args, w * 4);
    const [o, outer, len, inner, j0, j1, jv, j, k, row, innerB, acc0, dst] = c.localsOf(i32, 13);
    const [lo, hi, tmp, alo, ahi] = c.localsOf(v128, 5);
    const m = c.local(v128);
    const sm = c.local(f32Type);
    c.set(outer, arg(RedArg.outer)).set(len, arg(RedArg.len)).set(inner, arg(RedArg.inner));
    c.set(innerB, I.shl(inner, 2));
    c.set(acc0, arg(RedArg.acc));
    c.set(j0, I.mul(task, arg(RedArg.perTask)));
    c.set(j1, minS(inner, I.add(j0, arg(RedArg.perTask))));
    c.set(jv, I.add(j0, I.and(I.sub(j1, j0), -4)));
    c.for(o, 0, outer, 1, () => {
      c.set(row, I.add(arg(RedArg.x), I.shl(I.mul(I.mul(o, len), inner), 2)));
      c.set(dst, I.add(arg(RedArg.out), I.shl(I.mul(o, inner), 2)));
      if (op === 'sum') {
        // float64 accumulators for this task's columns (row k added in f64 lanes).
        c.for(j, j0, j1, 1, () => c.storeF64(I.add(acc0, I.shl(j, 3)), F64.const(0)));
        c.for(k, 0, len, 1, () => {
          const src = I.add(row, I.mul(k, innerB));
          c.for(j, j0, jv, 4, () => {
            const a = I.add(acc0, I.shl(j, 3));
            widen(c, V.load(I.add(src, I.shl(j, 2))), lo, hi, tmp);
            c.set(alo, V.dadd(V.load(a), lo));
            c.set(ahi, V.dadd(V.load(a, 16), hi));
            c.storeV(a, alo);
            c.storeV(a, ahi, 16);
          });
          c.for(j, jv, j1, 1, () => {
            const a = I.add(acc0, I.shl(j, 3));
            c.storeF64(a, F64.add(F64.load(a), F64.promote(F32.load(I.add(src, I.shl(j, 2))))));
          });
        });
        c.for(j, j0, j1, 1, () =>
          c.storeF32(I.add(dst, I.shl(j, 2)), F32.demote(F64.mul(F64.load(I.add(acc0, I.shl(j, 3))), F64.load(args, RED_SCALE_AT)))),
        );
      } else {
        const vop = op === 'max' ? V.max : V.min;
        const sop = op === 'max' ? F32.max : F32.min;
        c.for(j, j0, jv, 4, () => {
          c.set(m, V.load(I.add(row, I.shl(j, 2))));
          c.for(k, 1, len, 1, () => c.set(m, vop(m, V.load(I.add(I.add(row, I.mul(k, innerB)), I.shl(j, 2))))));
          c.storeV(I.add(dst, I.shl(j, 2)), m);
        });
        c.for(j, jv, j1, 1, () => {
          c.set(sm, F32.load(I.add(row, I.shl(j, 2))));
          c.for(k, 1, len, 1, () => c.set(sm, sop(sm, F32.load(I.add(I.add(row, I.mul(k, innerB)), I.shl(j, 2))))));
          c.storeF32(I.add(dst, I.shl(j, 2)), sm);
        });
      }
    });
  });
}
