/**
 * A small WebAssembly binary writer: enough of the format (types, an imported memory, functions, exports,
 * code) and of the instruction set (control, locals, i32/f32/f64 scalars, SIMD128 and relaxed-SIMD FMA) to
 * write the backend's kernels in TypeScript. We emit the module ourselves instead of compiling C or
 * AssemblyScript so the build needs no toolchain and we choose the exact instruction sequence of every hot
 * loop (the register blocking of the GEMM micro-kernel is the whole point).
 *
 * Kernels are written as expression trees: an `Expr` pushes one value; statements (`set`, `store`, loops)
 * consume them. The writer checks nothing beyond what it needs to lay out bytes — `WebAssembly.validate`
 * is the type checker, and the unit tests validate every module the backend can build.
 */

export const i32 = 0x7f;
export const f32 = 0x7d;
export const f64 = 0x7c;
export const v128 = 0x7b;
export type ValType = typeof i32 | typeof f32 | typeof f64 | typeof v128;

/** A local variable (parameters first, in order). Using one as an Expr reads it. */
export class Local {
  constructor(
    readonly index: number,
    readonly type: ValType,
  ) {}
}

/** A tuple of N locals (for destructuring without undefined). */
export type Locals<N extends number, R extends Local[] = []> = R['length'] extends N ? R : Locals<N, [Local, ...R]>;

/** Something that pushes one value: a local, an integer literal (i32.const), or code. */
export type Expr = Local | number | ((c: Code) => void);

// ---- bytes

function uleb(out: number[], value: number): void {
  let v = value >>> 0;
  do {
    const byte = v & 0x7f;
    v >>>= 7;
    out.push(v === 0 ? byte : byte | 0x80);
  } while (v !== 0);
}

function sleb(out: number[], value: number): void {
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function name(out: number[], s: string): void {
  const bytes = new TextEncoder().encode(s);
  uleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

function section(out: number[], id: number, body: number[]): void {
  out.push(id);
  uleb(out, body.length);
  for (const b of body) out.push(b);
}

const scratchF32 = new Float32Array(1);
const scratchF64 = new Float64Array(1);

// ---- code

/** Alignment hints (log2 bytes) default to the natural alignment; we never rely on aligned access. */
export class Code {
  readonly bytes: number[] = [];
  private readonly locals: ValType[] = [];
  private nextLocal: number;

  constructor(params: readonly ValType[]) {
    this.nextLocal = params.length;
  }

  /** A new local of `type`, zero-initialised (as wasm guarantees). */
  local(type: ValType): Local {
    this.locals.push(type);
    return new Local(this.nextLocal++, type);
  }

  /** `count` new locals of `type`. */
  localsOf<N extends number>(type: ValType, count: N): Locals<N> {
    return Array.from({ length: count }, () => this.local(type)) as Locals<N>;
  }

  /** Body bytes: the local declarations, the instructions, `end`. */
  finish(): number[] {
    const out: number[] = [];
    const runs: [number, ValType][] = [];
    for (const t of this.locals) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    uleb(out, runs.length);
    for (const [count, t] of runs) {
      uleb(out, count);
      out.push(t);
    }
    for (const b of this.bytes) out.push(b);
    out.push(0x0b);
    return out;
  }

  op(...bytes: number[]): this {
    for (const b of bytes) this.bytes.push(b);
    return this;
  }

  u32(v: number): this {
    uleb(this.bytes, v);
    return this;
  }

  /** A SIMD instruction: the 0xfd prefix and its LEB128 sub-opcode. */
  simd(sub: number): this {
    this.bytes.push(0xfd);
    uleb(this.bytes, sub);
    return this;
  }

  memarg(align: number, offset: number): this {
    uleb(this.bytes, align);
    uleb(this.bytes, offset);
    return this;
  }

  push(e: Expr): this {
    if (e instanceof Local) {
      this.bytes.push(0x20);
      uleb(this.bytes, e.index);
    } else if (typeof e === 'number') {
      this.bytes.push(0x41);
      sleb(this.bytes, e);
    } else e(this);
    return this;
  }

  // ---- statements

  set(l: Local, e: Expr): this {
    this.push(e).op(0x21);
    return this.u32(l.index);
  }

  /** Evaluates for side effects only (a call with a result, say). */
  drop(e: Expr): this {
    return this.push(e).op(0x1a);
  }

  block(body: () => void): this {
    this.op(0x02, 0x40);
    body();
    return this.op(0x0b);
  }

  loop(body: () => void): this {
    this.op(0x03, 0x40);
    body();
    return this.op(0x0b);
  }

  if(cond: Expr, then: () => void, otherwise?: () => void): this {
    this.push(cond).op(0x04, 0x40);
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    return this.op(0x0b);
  }

  br(depth: number): this {
    return this.op(0x0c).u32(depth);
  }

  brIf(depth: number, cond: Expr): this {
    return this.push(cond).op(0x0d).u32(depth);
  }

  ret(): this {
    return this.op(0x0f);
  }

  /** `for (v = from; v < to; v += step) body()`, signed compare; the body runs zero times when from ≥ to. */
  for(v: Local, from: Expr, to: Expr, step: number, body: () => void): this {
    this.set(v, from);
    return this.block(() => {
      this.brIf(0, I.geS(v, to));
      this.loop(() => {
        body();
        this.set(v, I.add(v, step));
        this.brIf(0, I.ltS(v, to));
      });
    });
  }

  /** `for` over byte addresses: the same with an unsigned compare (the heap may reach past 2 GiB). */
  forU(v: Local, from: Expr, to: Expr, step: number, body: () => void): this {
    this.set(v, from);
    return this.block(() => {
      this.brIf(0, I.geU(v, to));
      this.loop(() => {
        body();
        this.set(v, I.add(v, step));
        this.brIf(0, I.ltU(v, to));
      });
    });
  }

  /** `do body() while (cond)`: the loop form of the hot kernels (one compare-and-branch per trip). */
  doWhile(body: () => void, cond: Expr): this {
    return this.loop(() => {
      body();
      this.brIf(0, cond);
    });
  }

  call(fn: number, ...args: Expr[]): this {
    for (const a of args) this.push(a);
    return this.op(0x10).u32(fn);
  }

  // ---- memory: stores (`offset` is a constant byte offset folded into the address)

  storeI32(addr: Expr, value: Expr, offset = 0): this {
    return this.push(addr).push(value).op(0x36).memarg(2, offset);
  }

  storeF32(addr: Expr, value: Expr, offset = 0): this {
    return this.push(addr).push(value).op(0x38).memarg(2, offset);
  }

  storeF64(addr: Expr, value: Expr, offset = 0): this {
    return this.push(addr).push(value).op(0x39).memarg(3, offset);
  }

  storeV(addr: Expr, value: Expr, offset = 0): this {
    return this.push(addr).push(value).simd(0x0b).memarg(4, offset);
  }
}

// ---- expressions

const unop = (op: number) => (a: Expr) => (c: Code) => void c.push(a).op(op);
const binop = (op: number) => (a: Expr, b: Expr) => (c: Code) => void c.push(a).push(b).op(op);
const vunop = (sub: number) => (a: Expr) => (c: Code) => void c.push(a).simd(sub);
const vbinop = (sub: number) => (a: Expr, b: Expr) => (c: Code) => void c.push(a).push(b).simd(sub);

/** i32 arithmetic and comparisons (comparisons push an i32 0/1). */
export const I = {
  add: binop(0x6a),
  sub: binop(0x6b),
  mul: binop(0x6c),
  divS: binop(0x6d),
  divU: binop(0x6e),
  remU: binop(0x70),
  and: binop(0x71),
  or: binop(0x72),
  shl: binop(0x74),
  shrS: binop(0x75),
  shrU: binop(0x76),
  eqz: unop(0x45),
  eq: binop(0x46),
  ne: binop(0x47),
  ltS: binop(0x48),
  ltU: binop(0x49),
  gtS: binop(0x4a),
  gtU: binop(0x4b),
  leS: binop(0x4c),
  leU: binop(0x4d),
  geS: binop(0x4e),
  geU: binop(0x4f),
  load:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x28).memarg(2, offset),
  select: (a: Expr, b: Expr, cond: Expr) => (c: Code) => void c.push(a).push(b).push(cond).op(0x1b),
  /** i32.load8_u / load8_s / load16_u: one narrow element, widened. */
  load8U:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x2d).memarg(0, offset),
  load8S:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x2c).memarg(0, offset),
  load16U:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x2f).memarg(1, offset),
  /** i32.trunc_sat_f32_s: NaN → 0, out of range saturates. */
  truncSatF32: (a: Expr) => (c: Code) => void c.push(a).op(0xfc).u32(0),
};

export const F32 = {
  const: (v: number) => (c: Code) => {
    scratchF32[0] = v;
    c.op(0x43, ...new Uint8Array(scratchF32.buffer));
  },
  load:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x2a).memarg(2, offset),
  abs: unop(0x8b),
  neg: unop(0x8c),
  sqrt: unop(0x91),
  add: binop(0x92),
  sub: binop(0x93),
  mul: binop(0x94),
  div: binop(0x95),
  min: binop(0x96),
  max: binop(0x97),
  eq: binop(0x5b),
  ne: binop(0x5c),
  lt: binop(0x5d),
  gt: binop(0x5e),
  le: binop(0x5f),
  ge: binop(0x60),
  demote: unop(0xb6),
  fromI32: unop(0xb2),
};

export const F64 = {
  const: (v: number) => (c: Code) => {
    scratchF64[0] = v;
    c.op(0x44, ...new Uint8Array(scratchF64.buffer));
  },
  load:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).op(0x2b).memarg(3, offset),
  sqrt: unop(0x9f),
  add: binop(0xa0),
  sub: binop(0xa1),
  mul: binop(0xa2),
  div: binop(0xa3),
  min: binop(0xa4),
  max: binop(0xa5),
  lt: binop(0x63),
  gt: binop(0x64),
  ge: binop(0x66),
  ne: binop(0x62),
  promote: unop(0xbb),
  fromI32: unop(0xb7),
};

/** SIMD128: f32x4 unless the name says f64x2 (`d…`) or a whole-vector operation. */
export const V = {
  load:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).simd(0x00).memarg(4, offset),
  /** Loads one f32 and splats it to every lane (one broadcast-load instruction on x64/arm64). */
  load32Splat:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).simd(0x09).memarg(2, offset),
  /** Loads 8 bytes into the low half, zeroes the high half. */
  load64Zero:
    (addr: Expr, offset = 0) =>
    (c: Code) =>
      void c.push(addr).simd(0x5d).memarg(3, offset),
  /** Replaces 64-bit lane `lane` of `v` with 8 bytes loaded from `addr`. */
  load64Lane:
    (addr: Expr, v: Expr, lane: number, offset = 0) =>
    (c: Code) =>
      void c.push(addr).push(v).simd(0x57).memarg(3, offset).op(lane),
  zero: (c: Code) => void c.simd(0x0c).op(...new Array<number>(16).fill(0)),
  /** A constant vector of four f32 lanes. */
  constF32:
    (a: number, b = a, d = a, e = a) =>
    (c: Code) => {
      const lanes = Float32Array.of(a, b, d, e);
      c.simd(0x0c).op(...new Uint8Array(lanes.buffer));
    },
  constI32:
    (a: number, b = a, d = a, e = a) =>
    (c: Code) => {
      const lanes = Int32Array.of(a, b, d, e);
      c.simd(0x0c).op(...new Uint8Array(lanes.buffer));
    },
  splat: vunop(0x13),
  dsplat: vunop(0x14),
  lane: (a: Expr, i: number) => (c: Code) => void c.push(a).simd(0x1f).op(i),
  dlane: (a: Expr, i: number) => (c: Code) => void c.push(a).simd(0x21).op(i),
  /** i8x16.shuffle with 16 lane indices (0–15 from a, 16–31 from b). */
  shuffle: (a: Expr, b: Expr, lanes: readonly number[]) => (c: Code) =>
    void c
      .push(a)
      .push(b)
      .simd(0x0d)
      .op(...lanes),
  and: vbinop(0x4e),
  or: vbinop(0x50),
  andnot: vbinop(0x4f),
  bitselect: (a: Expr, b: Expr, mask: Expr) => (c: Code) => void c.push(a).push(b).push(mask).simd(0x52),
  anyTrue: vunop(0x53),
  eq: vbinop(0x41),
  ne: vbinop(0x42),
  lt: vbinop(0x43),
  gt: vbinop(0x44),
  le: vbinop(0x45),
  ge: vbinop(0x46),
  abs: vunop(0xe0),
  neg: vunop(0xe1),
  sqrt: vunop(0xe3),
  add: vbinop(0xe4),
  sub: vbinop(0xe5),
  mul: vbinop(0xe6),
  div: vbinop(0xe7),
  /** IEEE 754-2019 minimum/maximum: NaN propagates and −0 < +0, as Math.min/max. */
  min: vbinop(0xe8),
  max: vbinop(0xe9),
  dadd: vbinop(0xf0),
  dsub: vbinop(0xf1),
  dmul: vbinop(0xf2),
  ddiv: vbinop(0xf3),
  dsqrt: vunop(0xef),
  dmax: vbinop(0xf5),
  /** Round to nearest, ties to even (f32x4.nearest). */
  nearest: vunop(0x6a),
  /** f32x4 → i32x4, truncating, NaN → 0, saturating. */
  truncSat: vunop(0xf8),
  /** f32x4.convert_i32x4_s. */
  fromI32: vunop(0xfa),
  iadd: vbinop(0xae),
  isub: vbinop(0xb1),
  ishl: (a: Expr, n: Expr) => (c: Code) => void c.push(a).push(n).simd(0xab),
  ishrS: (a: Expr, n: Expr) => (c: Code) => void c.push(a).push(n).simd(0xac),
  /** Lanes 0 and 1 widened to f64x2. */
  promoteLow: vunop(0x5f),
  /** f64x2 narrowed into lanes 0 and 1, lanes 2 and 3 zero. */
  demoteZero: vunop(0x5e),
  /** A constant vector of sixteen bytes. */
  constBytes: (bytes: readonly number[]) => (c: Code) => void c.simd(0x0c).op(...bytes.map((b) => b & 0xff)),
  /** i32x4.splat of an i32. */
  isplat: vunop(0x11),
  /** i8x16.swizzle: lane i = table[idx[i]] (0 for idx ≥ 16). */
  swizzle: vbinop(0x0e),
  /** i8x16.shr_u by an i32 count. */
  i8ShrU: (a: Expr, n: Expr) => (c: Code) => void c.push(a).push(n).simd(0x6d),
  ishrU: (a: Expr, n: Expr) => (c: Code) => void c.push(a).push(n).simd(0xad),
  /** i32x4.eq (all-ones lanes where equal). */
  ieq: vbinop(0x37),
  /** i16x8 from the low / high eight i8 lanes, sign-extended. */
  i16FromI8Low: vunop(0x87),
  i16FromI8High: vunop(0x88),
  /** i32x4 from the low / high four i16 lanes, sign- or zero-extended. */
  i32FromI16LowS: vunop(0xa7),
  i32FromI16HighS: vunop(0xa8),
  i32FromI16LowU: vunop(0xa9),
  i32FromI16HighU: vunop(0xaa),
  /** a·b + c in one rounding (relaxed SIMD; the engine may also round twice). */
  relaxedMadd: (a: Expr, b: Expr, acc: Expr) => (c: Code) => void c.push(a).push(b).push(acc).simd(0x105),
  dRelaxedMadd: (a: Expr, b: Expr, acc: Expr) => (c: Code) => void c.push(a).push(b).push(acc).simd(0x107),
};

// ---- module

interface FuncDef {
  readonly name: string;
  readonly type: number;
  readonly exported: boolean;
  body: number[] | null;
}

/** A module whose memory is imported as `env.memory` (shared when `sharedMemory`, for worker threads). */
export class ModuleBuilder {
  private readonly types: string[] = [];
  private readonly funcs: FuncDef[] = [];

  constructor(private readonly memory: { readonly initialPages: number; readonly maximumPages: number; readonly shared: boolean }) {}

  /** Declares a function (so others can call it before it is defined); returns its index. */
  declare(fname: string, params: readonly ValType[], results: readonly ValType[], exported = true): number {
    const sig = [0x60, params.length, ...params, results.length, ...results];
    const key = sig.join(',');
    let type = this.types.indexOf(key);
    if (type < 0) type = this.types.push(key) - 1;
    return this.funcs.push({ name: fname, type, exported, body: null }) - 1;
  }

  define<P extends readonly ValType[]>(index: number, params: P, build: (c: Code, args: { [K in keyof P]: Local }) => void): void {
    const def = this.funcs[index];
    if (!def) throw new RangeError(`no function ${index}`);
    const c = new Code(params);
    build(c, params.map((t, i) => new Local(i, t)) as { [K in keyof P]: Local });
    def.body = c.finish();
  }

  func<const P extends readonly ValType[]>(
    fname: string,
    params: P,
    results: readonly ValType[],
    build: (c: Code, args: { [K in keyof P]: Local }) => void,
    exported = true,
  ): number {
    const index = this.declare(fname, params, results, exported);
    this.define(index, params, build);
    return index;
  }

  bytes(): Uint8Array {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    const types: number[] = [];
    uleb(types, this.types.length);
    for (const key of this.types) {
      const parts = key.split(',').map(Number);
      // [0x60, nParams, ...params, nResults, ...results] with counts small enough to be one LEB byte.
      for (const b of parts) types.push(b);
    }
    section(out, 1, types);

    const imports: number[] = [];
    uleb(imports, 1);
    name(imports, 'env');
    name(imports, 'memory');
    imports.push(0x02, this.memory.shared ? 0x03 : 0x01);
    uleb(imports, this.memory.initialPages);
    uleb(imports, this.memory.maximumPages);
    section(out, 2, imports);

    const funcs: number[] = [];
    uleb(funcs, this.funcs.length);
    for (const f of this.funcs) uleb(funcs, f.type);
    section(out, 3, funcs);

    const exports: number[] = [];
    const exported = this.funcs.map((f, i) => [f, i] as const).filter(([f]) => f.exported);
    uleb(exports, exported.length);
    for (const [f, i] of exported) {
      name(exports, f.name);
      exports.push(0x00);
      uleb(exports, i);
    }
    section(out, 7, exports);

    const code: number[] = [];
    uleb(code, this.funcs.length);
    for (const f of this.funcs) {
      if (!f.body) throw new Error(`wasm function '${f.name}' was declared but never defined`);
      uleb(code, f.body.length);
      for (const b of f.body) code.push(b);
    }
    section(out, 10, code);
    return Uint8Array.from(out);
  }
}
