/**
 * Tier 2: the backend under test against the reference backend (normally @dorajs/backend-cpu) on seeded
 * random inputs, for every kernel. Layout, indexing and casts must match exactly; arithmetic within the
 * suite's tolerance; accumulating kernels by max|a − b| / max|b| (summation order may differ).
 */
import type { Backend, BinaryOp, Conv2dParams, DType, TensorInfo, UnaryOp } from '@dorajs/core';
import { assertClose, assertEqual, type Metric } from '../compare.js';
import { convOutputShape, sizeOf } from '../host-math.js';
import type { SeededRandom } from '../prng.js';
import { MATMUL_REFERENCE_CASES } from '../tables/matmul.js';
import type { ConformanceCase, ConformanceTier } from '../types.js';

export interface InputSpec {
  readonly shape: readonly number[];
  readonly dtype?: DType;
  /** How to draw each value (default: standard normal); int32 inputs draw from [ints[0], ints[1]). */
  readonly draw?: (r: SeededRandom) => number;
  readonly ints?: readonly [number, number];
}

export interface ReferenceCase {
  readonly id: string;
  readonly title: string;
  readonly inputs: readonly InputSpec[];
  readonly out: { readonly shape: readonly number[]; readonly dtype: DType };
  /** Calls the kernel on one backend; returns its handle. */
  readonly call: (backend: Backend, inputs: readonly TensorInfo[]) => unknown;
  /** 'exact' for kernels that only move or convert values. */
  readonly compare?: Metric | 'exact';
  /** A fused kernel both backends must implement for the case to run. */
  readonly needs?: 'weightNorm' | 'doraCompose';
}

const T = 'vs-reference';
const positive = (r: SeededRandom) => r.uniform(0.05, 4);
const nonZero = (r: SeededRandom) => r.uniform(0.25, 2) * (r.next() < 0.5 ? -1 : 1);
const wide = (r: SeededRandom) => r.normal() * 3;

const BINARY_OPS: readonly BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow', 'greater', 'equal'];
const UNARY_OPS: readonly UnaryOp[] = [
  'neg',
  'abs',
  'exp',
  'log',
  'sqrt',
  'rsqrt',
  'reciprocal',
  'square',
  'relu',
  'step',
  'sigmoid',
  'silu',
  'gelu',
  'geluTanh',
  'tanh',
  'erf',
  'sin',
  'cos',
  'sign',
  'isFinite',
];
const POSITIVE_DOMAIN = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
const CONV: Conv2dParams = { stride: [2, 1], padding: [1, 0], dilation: [2, 1], groups: 2 };
const CONV_X = [2, 4, 9, 8];
const CONV_W = [6, 2, 3, 2];
const CONV_Y = convOutputShape(CONV_X, CONV_W, CONV);

export const REFERENCE_CASES: readonly ReferenceCase[] = [
  ...MATMUL_REFERENCE_CASES.map(
    (m): ReferenceCase => ({
      id: m.id,
      title: `${m.title}: a ${JSON.stringify(m.a)} · b ${JSON.stringify(m.b)}`,
      inputs: [{ shape: m.a }, { shape: m.b }],
      out: { shape: matmulOut(m.a, m.b, !!m.transposeA, !!m.transposeB), dtype: 'float32' },
      call: (b, [x, y]) =>
        b.matmul(x!, y!, { transposeA: !!m.transposeA, transposeB: !!m.transposeB }, matmulOut(m.a, m.b, !!m.transposeA, !!m.transposeB)),
      compare: 'max-relative',
    }),
  ),
  ...BINARY_OPS.map(
    (op): ReferenceCase => ({
      id: `binary.${op}`,
      title: `${op} of [4,1,6] and [3,1] → [4,3,6]`,
      inputs: [
        { shape: [4, 1, 6], draw: op === 'pow' ? positive : wide },
        { shape: [3, 1], draw: op === 'div' || op === 'pow' ? nonZero : wide },
      ],
      out: { shape: [4, 3, 6], dtype: 'float32' },
      call: (b, [x, y]) => b.binary(op, x!, y!, [4, 3, 6]),
    }),
  ),
  ...(['add', 'mul', 'max'] as const).map(
    (op): ReferenceCase => ({
      id: `binary.int32.${op}`,
      title: `int32 ${op} of [5,7] and [7]`,
      inputs: [
        { shape: [5, 7], dtype: 'int32', ints: [-1000, 1000] },
        { shape: [7], dtype: 'int32', ints: [-1000, 1000] },
      ],
      out: { shape: [5, 7], dtype: 'int32' },
      call: (b, [x, y]) => b.binary(op, x!, y!, [5, 7]),
      compare: 'exact',
    }),
  ),
  ...UNARY_OPS.map(
    (op): ReferenceCase => ({
      id: `unary.${op}`,
      title: `${op} of [5,37]`,
      inputs: [{ shape: [5, 37], draw: POSITIVE_DOMAIN.has(op) ? positive : wide }],
      out: { shape: [5, 37], dtype: 'float32' },
      call: (b, [x]) => b.unary(op, x!),
    }),
  ),
  {
    id: 'affine',
    title: 'affine of [6,11] by −1.75, +0.5',
    inputs: [{ shape: [6, 11] }],
    out: { shape: [6, 11], dtype: 'float32' },
    call: (b, [x]) => b.affine(x!, -1.75, 0.5),
  },
  {
    id: 'where',
    title: 'where of cond [4,1,6], a [3,1], b [4,3,6]',
    inputs: [{ shape: [4, 1, 6], draw: (r) => (r.next() < 0.5 ? 0 : 1) }, { shape: [3, 1] }, { shape: [4, 3, 6] }],
    out: { shape: [4, 3, 6], dtype: 'float32' },
    call: (b, [c, x, y]) => b.where(c!, x!, y!, [4, 3, 6]),
    compare: 'exact',
  },
  ...(['sum', 'mean', 'max', 'min'] as const).flatMap((op) =>
    [[0, 2], [1], [2]].map(
      (axes): ReferenceCase => ({
        id: `reduce.${op}.axes-${axes.join('-')}`,
        title: `${op} of [4,6,5] over [${axes.join(', ')}]`,
        inputs: [{ shape: [4, 6, 5] }],
        out: { shape: [4, 6, 5].map((d, i) => (axes.includes(i) ? 1 : d)), dtype: 'float32' },
        call: (b, [x]) =>
          b.reduce(
            op,
            x!,
            axes,
            [4, 6, 5].map((d, i) => (axes.includes(i) ? 1 : d)),
          ),
        compare: op === 'max' || op === 'min' ? 'exact' : 'max-relative',
      }),
    ),
  ),
  {
    id: 'argMax',
    title: 'argMax of [7,13]',
    inputs: [{ shape: [7, 13] }],
    out: { shape: [7], dtype: 'int32' },
    call: (b, [x]) => b.argMax(x!),
    compare: 'exact',
  },
  ...[false, true].map(
    (log): ReferenceCase => ({
      id: log ? 'logSoftmax' : 'softmax',
      title: `${log ? 'log-' : ''}softmax of [5,33]`,
      inputs: [{ shape: [5, 33], draw: (r) => r.normal() * 5 }],
      out: { shape: [5, 33], dtype: 'float32' },
      call: (b, [x]) => b.softmax(x!, log),
    }),
  ),
  {
    id: 'gather',
    title: 'gather rows of [20,8] by indices [3,5]',
    inputs: [{ shape: [20, 8] }, { shape: [3, 5], dtype: 'int32', ints: [0, 20] }],
    out: { shape: [3, 5, 8], dtype: 'float32' },
    call: (b, [t, i]) => b.gather(t!, i!),
    compare: 'exact',
  },
  {
    id: 'scatterAdd',
    title: 'scatterAdd of updates [15,4] into 6 rows',
    inputs: [{ shape: [15], dtype: 'int32', ints: [0, 6] }, { shape: [15, 4] }],
    out: { shape: [6, 4], dtype: 'float32' },
    call: (b, [i, u]) => b.scatterAdd(i!, u!, 6),
    compare: 'max-relative',
  },
  {
    id: 'transpose',
    title: 'transpose [3,4,5,6] by [2,0,3,1]',
    inputs: [{ shape: [3, 4, 5, 6] }],
    out: { shape: [5, 3, 6, 4], dtype: 'float32' },
    call: (b, [x]) => b.transpose(x!, [2, 0, 3, 1]),
    compare: 'exact',
  },
  {
    id: 'slice',
    title: 'slice [5,6,7] at [1,2,0] size [3,3,7]',
    inputs: [{ shape: [5, 6, 7] }],
    out: { shape: [3, 3, 7], dtype: 'float32' },
    call: (b, [x]) => b.slice(x!, [1, 2, 0], [3, 3, 7]),
    compare: 'exact',
  },
  {
    id: 'concat',
    title: 'concat [2,3,5], [2,1,5], [2,4,5] along axis 1',
    inputs: [{ shape: [2, 3, 5] }, { shape: [2, 1, 5] }, { shape: [2, 4, 5] }],
    out: { shape: [2, 8, 5], dtype: 'float32' },
    call: (b, xs) => b.concat(xs, 1, [2, 8, 5]),
    compare: 'exact',
  },
  {
    id: 'cast.float32-int32',
    title: 'cast [40] of uniform(−100, 100) to int32',
    inputs: [{ shape: [40], draw: (r) => r.uniform(-100, 100) }],
    out: { shape: [40], dtype: 'int32' },
    call: (b, [x]) => b.cast(x!, 'int32'),
    compare: 'exact',
  },
  {
    id: 'cast.int32-float32',
    title: 'cast int32 [40] to float32',
    inputs: [{ shape: [40], dtype: 'int32', ints: [-(2 ** 30), 2 ** 30] }],
    out: { shape: [40], dtype: 'float32' },
    call: (b, [x]) => b.cast(x!, 'float32'),
    compare: 'exact',
  },
  {
    id: 'fill',
    title: 'fill [3,7] with −0.125',
    inputs: [],
    out: { shape: [3, 7], dtype: 'float32' },
    call: (b) => b.fill([3, 7], -0.125, 'float32'),
    compare: 'exact',
  },
  {
    id: 'conv2d.forward',
    title: `conv2d x ${JSON.stringify(CONV_X)}, w ${JSON.stringify(CONV_W)}, groups 2, stride (2,1), padding (1,0), dilation (2,1)`,
    inputs: [{ shape: CONV_X }, { shape: CONV_W }],
    out: { shape: CONV_Y, dtype: 'float32' },
    call: (b, [x, w]) => b.conv2d(x!, w!, CONV, CONV_Y),
    compare: 'max-relative',
  },
  {
    id: 'conv2d.input-grad',
    title: 'conv2dBackpropInput of the same configuration',
    inputs: [{ shape: CONV_Y }, { shape: CONV_W }],
    out: { shape: CONV_X, dtype: 'float32' },
    call: (b, [dy, w]) => b.conv2dBackpropInput(dy!, w!, CONV, CONV_X),
    compare: 'max-relative',
  },
  {
    id: 'conv2d.filter-grad',
    title: 'conv2dBackpropFilter of the same configuration',
    inputs: [{ shape: CONV_X }, { shape: CONV_Y }],
    out: { shape: CONV_W, dtype: 'float32' },
    call: (b, [x, dy]) => b.conv2dBackpropFilter(x!, dy!, CONV, CONV_W),
    compare: 'max-relative',
  },
  ...[false, true].map(
    (tw): ReferenceCase => ({
      id: `weightNorm${tw ? '.transposed' : ''}`,
      title: `fused weightNorm, out 24, in 70, r 5${tw ? ', W stored [in, out]' : ''}`,
      inputs: [{ shape: tw ? [70, 24] : [24, 70] }, { shape: [5, 70] }, { shape: [24, 5] }],
      out: { shape: [24], dtype: 'float32' },
      call: (b, [w, a, bb]) => b.weightNorm!(w!, a!, bb!, 0.75, { transposeW: tw }),
      compare: 'max-relative',
      needs: 'weightNorm',
    }),
  ),
  {
    id: 'doraCompose',
    title: 'fused doraCompose of [3,4,9] with bias',
    inputs: [{ shape: [3, 4, 9] }, { shape: [3, 4, 9] }, { shape: [9], draw: positive }, { shape: [9] }],
    out: { shape: [3, 4, 9], dtype: 'float32' },
    call: (b, [base, lora, g, bias]) => b.doraCompose!(base!, lora!, g!, 1.5, bias!),
    needs: 'doraCompose',
  },
];

function matmulOut(a: readonly number[], b: readonly number[], ta: boolean, tb: boolean): number[] {
  const m = ta ? a[a.length - 1]! : a[a.length - 2]!;
  const n = tb ? b[b.length - 2]! : b[b.length - 1]!;
  const batchA = a.slice(0, -2);
  const batchB = b.slice(0, -2);
  const rank = Math.max(batchA.length, batchB.length);
  const batch = Array.from({ length: rank }, (_, i) => {
    const da = batchA[batchA.length - rank + i] ?? 1;
    const db = batchB[batchB.length - rank + i] ?? 1;
    return da === 1 ? db : da;
  });
  return [...batch, m, n];
}

/** A stable seed per case id (FNV-1a), so adding a case never changes another case's inputs. */
function seedOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function referenceCase(rc: ReferenceCase): ConformanceCase {
  return {
    id: `${T}/${rc.id}`,
    title: rc.title,
    async run(ctx) {
      const ref = await ctx.reference();
      if (rc.needs) {
        if (!ctx.backend[rc.needs]) ctx.skip(`the backend has no fused ${rc.needs} (core uses its composite)`);
        if (!ref[rc.needs]) ctx.skip(`the reference backend has no fused ${rc.needs}`);
      }
      const r = ctx.random(seedOf(rc.id));
      const host = rc.inputs.map((s) =>
        s.dtype === 'int32' ? r.int32(sizeOf(s.shape), s.ints?.[0] ?? -100, s.ints?.[1] ?? 100) : r.float32(sizeOf(s.shape), s.draw),
      );
      const run = (b: Backend) => {
        const inputs = rc.inputs.map((s, i) => ctx.tensor(host[i]!, s.shape, s.dtype ?? 'float32', b));
        return ctx.own(rc.call(b, inputs), rc.out.shape, rc.out.dtype, b);
      };
      const actual = await ctx.read(run(ctx.backend));
      const expected = await ctx.read(run(ref), ref);
      if (rc.compare === 'exact') assertEqual(rc.id, actual, expected);
      else assertClose(rc.id, actual, expected, ctx.closeOptions(rc.compare ? { metric: rc.compare } : {}));
    },
  };
}

export const referenceTier: ConformanceTier = {
  id: T,
  title: 'every kernel against the reference backend on seeded random inputs',
  cases: REFERENCE_CASES.map(referenceCase),
};
