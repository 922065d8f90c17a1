/**
 * Tier 1: every primitive kernel against values computed on the host in float64 straight from the
 * definitions (or written out by hand), with the edge cases that break real kernels: odd sizes, K beyond
 * a tile, M = 1, broadcasting both ways, NaN and Inf, overflow, large logits, repeated indices.
 */
import { bf16ToF32, type DType, f16ToF32, f32ToBf16, f32ToF16, type TensorInfo } from '@dorajs/core';
import { assertClose } from '../compare.js';
import {
  broadcastIndices,
  broadcastShape,
  convFilterGradHost,
  convHost,
  convInputGradHost,
  convOutputShape,
  matmulHost,
  reduceHost,
  sizeOf,
  softmaxHost,
} from '../host-math.js';
import { CONV2D_CASES, type Conv2dCase } from '../tables/conv2d.js';
import { BINARY_CASES, BINARY_HOST, BROADCAST_CASES, UNARY_CASES, UNARY_HOST, unaryInputs } from '../tables/elementwise.js';
import { MATMUL_CASES, type MatmulCase } from '../tables/matmul.js';
import type { CaseContext, ConformanceCase, ConformanceTier } from '../types.js';

const T = 'primitive';
const c = (id: string, title: string, run: (ctx: CaseContext) => Promise<void>): ConformanceCase => ({ id: `${T}/${id}`, title, run });

// ---------------------------------------------------------------- storage

const STORAGE: ConformanceCase[] = [
  c('storage.round-trip', 'upload then download returns the same bits for every dtype the backend stores', async (ctx) => {
    const samples: Record<DType, number[]> = {
      float32: [0, -1.5, 3.4028234663852886e38, 1.401298464324817e-45, Infinity, -Infinity, 1 / 3, -0],
      int32: [0, -1, 2147483647, -2147483648, 123456789],
      bfloat16: [0x0000, 0x3f80, 0xbf80, 0x7f80, 0x0001, 0x7f7f],
      float16: [0x0000, 0x3c00, 0xbc00, 0x7c00, 0x0001, 0x7bff],
      int8: [0, -128, 127, -1],
      uint8: [0, 255, 128, 1],
    };
    for (const dtype of ctx.backend.capabilities.dtypes) {
      const values = samples[dtype];
      await ctx.expectEqual(
        `round trip ${dtype}`,
        ctx.tensor(values, [values.length], dtype),
        Float64Array.from(values, (v) => (dtype === 'float32' ? Math.fround(v) : v)),
      );
    }
  }),
  c('storage.download-copies', 'downloaded arrays are copies: mutating one does not change the tensor', async (ctx) => {
    const t = ctx.tensor([1, 2, 3], [3]);
    const first = await ctx.read(t);
    first[0] = 42;
    await ctx.expectEqual('after mutating a download', t, [1, 2, 3]);
  }),
  c('storage.upload-copies', 'uploads copy: mutating the host array afterwards does not change the tensor', async (ctx) => {
    const host = Float32Array.from([1, 2, 3]);
    const t = ctx.tensor(host, [3]);
    host[1] = 42;
    await ctx.expectEqual('after mutating the uploaded array', t, [1, 2, 3]);
  }),
  c('storage.live-buffers', 'liveBuffers rises while handles live and returns to its start after release', async (ctx) => {
    const b = ctx.backend;
    const start = b.liveBuffers();
    const x = b.upload(Float32Array.from([1, 2, 3, 4]), [2, 2], 'float32');
    const xi: TensorInfo = { data: x, shape: [2, 2], dtype: 'float32' };
    const y = b.matmul(xi, xi, {}, [2, 2]);
    const z = b.unary('exp', { data: y, shape: [2, 2], dtype: 'float32' });
    const during = b.liveBuffers();
    for (const h of [z, y, x]) b.release(h);
    if (!(during > start)) throw new Error(`liveBuffers() was ${during} with 3 live handles, started at ${start}`);
    if (b.liveBuffers() !== start) throw new Error(`liveBuffers() is ${b.liveBuffers()} after releasing everything, started at ${start}`);
  }),
  c('fill.float32', 'fill float32', async (ctx) => {
    await ctx.expectEqual('fill 3.25', ctx.own(ctx.backend.fill([2, 3], 3.25, 'float32'), [2, 3], 'float32'), new Array(6).fill(3.25));
    await ctx.expectEqual('fill −Inf', ctx.own(ctx.backend.fill([2], -Infinity, 'float32'), [2], 'float32'), [-Infinity, -Infinity]);
  }),
  c('fill.int32', 'fill int32', async (ctx) => {
    await ctx.expectEqual('fill −7', ctx.own(ctx.backend.fill([4], -7, 'int32'), [4], 'int32'), [-7, -7, -7, -7]);
  }),
  c('fill.scalar', 'fill a rank-0 tensor', async (ctx) => {
    await ctx.expectEqual('fill []', ctx.own(ctx.backend.fill([], 2.5, 'float32'), [], 'float32'), [2.5]);
  }),
  c('fill.bfloat16', 'fill bfloat16 stores the rounded bits', async (ctx) => {
    if (!ctx.supports('bfloat16')) ctx.skip('the backend does not store bfloat16');
    await ctx.expectEqual('fill 1.5 bf16', ctx.own(ctx.backend.fill([2], 1.5, 'bfloat16'), [2], 'bfloat16'), [0x3fc0, 0x3fc0]);
  }),
];

// ---------------------------------------------------------------- matmul

function matmulCase(m: MatmulCase): ConformanceCase {
  return c(m.id, `${m.title}: a ${JSON.stringify(m.a)} · b ${JSON.stringify(m.b)}`, async (ctx) => {
    const r = ctx.random(m.seed);
    const a = r.float32(sizeOf(m.a));
    const b = r.float32(sizeOf(m.b));
    const host = matmulHost(a, m.a, b, m.b, m.transposeA, m.transposeB);
    const y = ctx.backend.matmul(
      ctx.tensor(a, m.a),
      ctx.tensor(b, m.b),
      { transposeA: !!m.transposeA, transposeB: !!m.transposeB },
      host.shape,
    );
    await ctx.expectClose(m.id, ctx.own(y, host.shape, 'float32'), host.value, { magnitude: host.magnitude });
  });
}

const MATMUL: ConformanceCase[] = [
  c('matmul.hand', '[[1,2,3],[4,5,6]] · [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]', async (ctx) => {
    const y = ctx.backend.matmul(ctx.tensor([1, 2, 3, 4, 5, 6], [2, 3]), ctx.tensor([7, 8, 9, 10, 11, 12], [3, 2]), {}, [2, 2]);
    await ctx.expectClose('matmul', ctx.own(y, [2, 2], 'float32'), [58, 64, 139, 154]);
  }),
  ...MATMUL_CASES.map(matmulCase),
  c('matmul.nan-through-zero', 'NaN and Inf reach the output even when multiplied by zero (no zero skipping)', async (ctx) => {
    // a row of zeros meets a NaN and an Inf of b: 0·NaN = 0·Inf = NaN
    const a = [0, 0, 0, 1, 1, 1];
    const b = [NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1, Infinity, 1];
    const y = ctx.backend.matmul(ctx.tensor(a, [2, 3]), ctx.tensor(b, [3, 4]), {}, [2, 4]);
    await ctx.expectClose('2×3 · 3×4', ctx.own(y, [2, 4], 'float32'), [NaN, 0, NaN, 0, NaN, 3, Infinity, 3]);
    const gemv = ctx.backend.matmul(ctx.tensor([0, 0, 0], [1, 3]), ctx.tensor(b, [3, 4]), {}, [1, 4]);
    await ctx.expectClose('1×3 · 3×4 (M = 1)', ctx.own(gemv, [1, 4], 'float32'), [NaN, 0, NaN, 0]);
  }),
  c('matmul.large-magnitude', 'products near 1e36 sum without spurious overflow; a sum beyond float32 max is Inf', async (ctx) => {
    const a = [1e18, -1e18, 2e18, 1e18, 1.5e19, 1.5e19];
    const b = [1e18, 1e18, 2e18, 1e18, 1e19, 1e19];
    const host = matmulHost(a.map(Math.fround), [3, 2], b.map(Math.fround), [2, 3], false, false);
    // row 2 sums 1.5e19·1e19·2 = 3e38 ≤ max; a 2 × 1.5e19 × 2e18 = 6e37 entry and so on stay finite
    const y = ctx.backend.matmul(ctx.tensor(a, [3, 2]), ctx.tensor(b, [2, 3]), {}, [3, 3]);
    await ctx.expectClose('matmul 1e18', ctx.own(y, [3, 3], 'float32'), host.value, { magnitude: host.magnitude });
  }),
];

// ---------------------------------------------------------------- elementwise

const BINARY: ConformanceCase[] = [
  ...BINARY_CASES.map((bc) =>
    c(`binary.${bc.id}`, `${bc.op}: ${bc.note}`, async (ctx) => {
      const n = bc.a.length;
      const y = ctx.backend.binary(bc.op, ctx.tensor(bc.a, [n]), ctx.tensor(bc.b, [n]), [n]);
      const expected = bc.a.map((a, i) => BINARY_HOST[bc.op](Math.fround(a), Math.fround(bc.b[i]!)));
      await ctx.expectClose(`${bc.op}`, ctx.own(y, [n], 'float32'), expected);
    }),
  ),
  ...BROADCAST_CASES.map((bc) =>
    c(`binary.broadcast.${bc.id}`, `${bc.op} ${JSON.stringify(bc.a)} with ${JSON.stringify(bc.b)}`, async (ctx) => {
      const r = ctx.random(300 + bc.id.length);
      const positive = bc.op === 'pow';
      const a = r.float32(sizeOf(bc.a), (q) => (positive ? q.uniform(0.1, 3) : q.normal()));
      const b = r.float32(sizeOf(bc.b), (q) => (positive ? q.uniform(-2, 2) : q.uniform(0.5, 2) * (q.next() < 0.5 ? -1 : 1)));
      const out = broadcastShape(bc.a, bc.b);
      const ia = broadcastIndices(bc.a, out);
      const ib = broadcastIndices(bc.b, out);
      const expected = Array.from(ia, (i, k) => BINARY_HOST[bc.op](a[i]!, b[ib[k]!]!));
      const y = ctx.backend.binary(bc.op, ctx.tensor(a, bc.a), ctx.tensor(b, bc.b), out);
      await ctx.expectClose(`${bc.op} broadcast`, ctx.own(y, out, 'float32'), expected);
    }),
  ),
  ...(['add', 'sub', 'mul', 'max', 'min', 'greater', 'equal'] as const).map((op) =>
    c(`binary.int32.${op}`, `${op} on int32 [2,3] with [3] (arithmetic stays int32, comparisons give float32)`, async (ctx) => {
      const a = [5, -3, 7, 0, 12, -8];
      const b = [2, -3, 9];
      const expected = a.map((v, i) => BINARY_HOST[op](v, b[i % 3]!));
      const isCompare = op === 'greater' || op === 'equal';
      const y = ctx.backend.binary(op, ctx.tensor(a, [2, 3], 'int32'), ctx.tensor(b, [3], 'int32'), [2, 3]);
      const t = ctx.own(y, [2, 3], isCompare ? 'float32' : 'int32');
      const got = await ctx.read(t);
      if (!isCompare && !(got instanceof Int32Array)) throw new Error(`int32 ${op} returned a ${got.constructor.name}`);
      await ctx.expectEqual(`int32 ${op}`, t, expected);
    }),
  ),
];

const UNARY: ConformanceCase[] = UNARY_CASES.map((uc) =>
  c(`unary.${uc.op}`, `${uc.op}: ordinary values and ${uc.note}`, async (ctx) => {
    const x = Float32Array.from(unaryInputs(uc));
    const y = ctx.backend.unary(uc.op, ctx.tensor(x, [x.length]));
    await ctx.expectClose(uc.op, ctx.own(y, [x.length], 'float32'), Array.from(x, UNARY_HOST[uc.op]));
  }),
);

const OTHER_ELEMENTWISE: ConformanceCase[] = [
  c('unary.int32', 'neg and abs keep int32', async (ctx) => {
    const x = ctx.tensor([3, -4, 0, 2147483647], [4], 'int32');
    await ctx.expectEqual('neg', ctx.own(ctx.backend.unary('neg', x), [4], 'int32'), [-3, 4, 0, -2147483647]);
    await ctx.expectEqual('abs', ctx.own(ctx.backend.unary('abs', x), [4], 'int32'), [3, 4, 0, 2147483647]);
  }),
  c('affine', 'a·scale + offset, with NaN and ±Inf', async (ctx) => {
    const x = [1, -2, 0.5, NaN, Infinity, -Infinity, 1e30];
    const y = ctx.backend.affine(ctx.tensor(x, [7]), -2.5, 0.75);
    await ctx.expectClose(
      'affine',
      ctx.own(y, [7], 'float32'),
      x.map((v) => v * -2.5 + 0.75),
    );
  }),
  c('where.broadcast', 'cond [3,1] (non-zero = true), a [1,4], b scalar', async (ctx) => {
    const cond = [1, 0, -0.5];
    const a = [10, 20, 30, 40];
    const y = ctx.backend.where(ctx.tensor(cond, [3, 1]), ctx.tensor(a, [1, 4]), ctx.tensor([-1], []), [3, 4]);
    await ctx.expectEqual('where', ctx.own(y, [3, 4], 'float32'), [10, 20, 30, 40, -1, -1, -1, -1, 10, 20, 30, 40]);
  }),
  c('where.elementwise', 'cond, a and b of one shape, NaN and Inf pass through untouched', async (ctx) => {
    const y = ctx.backend.where(
      ctx.tensor([0, 1, 1, 0], [2, 2]),
      ctx.tensor([NaN, Infinity, 3, 4], [2, 2]),
      ctx.tensor([5, 6, 7, NaN], [2, 2]),
      [2, 2],
    );
    await ctx.expectEqual('where', ctx.own(y, [2, 2], 'float32'), [5, Infinity, 3, NaN]);
  }),
  c('where.int32', 'int32 branches with an int32 condition', async (ctx) => {
    const y = ctx.backend.where(
      ctx.tensor([0, 3], [2], 'int32'),
      ctx.tensor([1, 2], [2], 'int32'),
      ctx.tensor([-1, -2], [2], 'int32'),
      [2],
    );
    await ctx.expectEqual('where', ctx.own(y, [2], 'int32'), [-1, 2]);
  }),
];

// ---------------------------------------------------------------- reductions

const REDUCE_AXES: readonly (readonly number[])[] = [[0], [1], [2], [0, 2], [1, 2], [0, 1], [0, 1, 2]];

const REDUCE: ConformanceCase[] = [
  ...(['sum', 'mean', 'max', 'min'] as const).flatMap((op, oi) =>
    REDUCE_AXES.map((axes, ai) =>
      c(`reduce.${op}.axes-${axes.join('-')}`, `${op} of [3,5,7] over axes [${axes.join(', ')}]`, async (ctx) => {
        const shape = [3, 5, 7];
        const x = ctx.random(400 + oi * 10 + ai).float32(sizeOf(shape));
        const host = reduceHost(op, x, shape, axes);
        const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const y = ctx.backend.reduce(op, ctx.tensor(x, shape), axes, kept);
        await ctx.expectClose(`${op}`, ctx.own(y, kept, 'float32'), host.value, { magnitude: host.magnitude });
      }),
    ),
  ),
  c('reduce.size-one-axis', 'sum over an axis of size 1 is a copy', async (ctx) => {
    const x = ctx.random(450).float32(12);
    const y = ctx.backend.reduce('sum', ctx.tensor(x, [4, 1, 3]), [1], [4, 1, 3]);
    await ctx.expectClose('sum', ctx.own(y, [4, 1, 3], 'float32'), x);
  }),
  c('reduce.nan', 'NaN in a slice makes that sum, max, min and mean NaN and leaves the others alone', async (ctx) => {
    const x = [1, NaN, 3, 4, 5, 6];
    for (const op of ['sum', 'max', 'min', 'mean'] as const) {
      const y = ctx.backend.reduce(op, ctx.tensor(x, [2, 3]), [1], [2, 1]);
      await ctx.expectClose(op, ctx.own(y, [2, 1], 'float32'), [NaN, reduceHost(op, [4, 5, 6], [3], [0]).value[0]!]);
    }
  }),
  c('reduce.infinities', 'max/min over ±Inf, sum of +Inf and −Inf is NaN', async (ctx) => {
    const x = [-Infinity, -Infinity, Infinity, 1, Infinity, -Infinity];
    await ctx.expectClose('max', ctx.own(ctx.backend.reduce('max', ctx.tensor(x, [3, 2]), [1], [3, 1]), [3, 1], 'float32'), [
      -Infinity,
      Infinity,
      Infinity,
    ]);
    await ctx.expectClose('min', ctx.own(ctx.backend.reduce('min', ctx.tensor(x, [3, 2]), [1], [3, 1]), [3, 1], 'float32'), [
      -Infinity,
      1,
      -Infinity,
    ]);
    await ctx.expectClose('sum', ctx.own(ctx.backend.reduce('sum', ctx.tensor(x, [3, 2]), [1], [3, 1]), [3, 1], 'float32'), [
      -Infinity,
      Infinity,
      NaN,
    ]);
  }),
  c('reduce.long-row', 'sum of 10 000 values of one sign stays accurate', async (ctx) => {
    const x = ctx.random(451).float32(10_000, (r) => r.uniform(0, 1));
    const host = reduceHost('sum', x, [10_000], [0]);
    await ctx.expectClose('sum', ctx.own(ctx.backend.reduce('sum', ctx.tensor(x, [10_000]), [0], [1]), [1], 'float32'), host.value);
  }),
  c('reduce.int32', 'sum, max and min of int32 stay int32', async (ctx) => {
    const x = ctx.tensor([4, -9, 7, 100, 3, -2], [2, 3], 'int32');
    await ctx.expectEqual('sum', ctx.own(ctx.backend.reduce('sum', x, [1], [2, 1]), [2, 1], 'int32'), [2, 101]);
    await ctx.expectEqual('max', ctx.own(ctx.backend.reduce('max', x, [0], [1, 3]), [1, 3], 'int32'), [100, 3, 7]);
    await ctx.expectEqual('min', ctx.own(ctx.backend.reduce('min', x, [0, 1], [1, 1]), [1, 1], 'int32'), [-9]);
  }),
  c('argMax.ties', 'the first maximum wins; −Inf rows; int32 [3,4] → [3]', async (ctx) => {
    const x = [1, 3, 3, 2, 5, 5, 5, 5, -Infinity, -1, -Infinity, -1];
    await ctx.expectEqual('argMax', ctx.own(ctx.backend.argMax(ctx.tensor(x, [3, 4])), [3], 'int32'), [1, 0, 1]);
  }),
  c('argMax.random', 'argMax of [2,3,7] over the last axis', async (ctx) => {
    const x = ctx.random(460).float32(42);
    const expected = Array.from({ length: 6 }, (_, r) => {
      const row = Array.from(x.subarray(r * 7, r * 7 + 7));
      return row.indexOf(Math.max(...row));
    });
    await ctx.expectEqual('argMax', ctx.own(ctx.backend.argMax(ctx.tensor(x, [2, 3, 7])), [2, 3], 'int32'), expected);
  }),
  c('argMax.int32', 'argMax of int32 values', async (ctx) => {
    await ctx.expectEqual('argMax', ctx.own(ctx.backend.argMax(ctx.tensor([3, 9, -2, 9], [4], 'int32')), [], 'int32'), [1]);
  }),
];

const SOFTMAX_ROWS: readonly { id: string; title: string; x: number[]; rowLength: number }[] = [
  {
    id: 'large-logits',
    title: 'logits near ±1000 (exp would overflow without the max shift)',
    x: [1000, 1001, 1002, 999, -1000, 0, 1000, 500],
    rowLength: 4,
  },
  {
    id: 'masked',
    title: 'rows with −Inf entries (a mask) but not all −Inf',
    x: [-Infinity, 0, 1, -Infinity, 2, -Infinity, -Infinity, -Infinity],
    rowLength: 4,
  },
  { id: 'one-element', title: 'rows of length 1 give 1 (log: 0)', x: [3, -7, 1e30], rowLength: 1 },
  { id: 'tiny-differences', title: 'equal logits give the uniform distribution', x: [7, 7, 7, 7, 7], rowLength: 5 },
];

const SOFTMAX: ConformanceCase[] = [
  ...[false, true].flatMap((log) => [
    c(`${log ? 'logSoftmax' : 'softmax'}.random`, `${log ? 'log-' : ''}softmax of [3,4,9] over the last axis`, async (ctx) => {
      const x = ctx.random(log ? 501 : 500).float32(108, (r) => r.normal() * 4);
      await ctx.expectClose(
        'softmax',
        ctx.own(ctx.backend.softmax(ctx.tensor(x, [3, 4, 9]), log), [3, 4, 9], 'float32'),
        softmaxHost(x, 9, log),
      );
    }),
    ...SOFTMAX_ROWS.map((s) =>
      c(`${log ? 'logSoftmax' : 'softmax'}.${s.id}`, `${log ? 'log-' : ''}softmax: ${s.title}`, async (ctx) => {
        const shape = [s.x.length / s.rowLength, s.rowLength];
        const expected = softmaxHost(s.x, s.rowLength, log);
        await ctx.expectClose('softmax', ctx.own(ctx.backend.softmax(ctx.tensor(s.x, shape), log), shape, 'float32'), expected);
      }),
    ),
  ]),
];

// ---------------------------------------------------------------- indexing

const INDEXING: ConformanceCase[] = [
  c('gather.repeated', 'rows of a [6,5] table by int32 indices [2,4] with repeats', async (ctx) => {
    const table = ctx.random(600).float32(30);
    const idx = [0, 5, 5, 2, 1, 0, 5, 3];
    const expected = idx.flatMap((i) => Array.from(table.subarray(i * 5, i * 5 + 5)));
    const y = ctx.backend.gather(ctx.tensor(table, [6, 5]), ctx.tensor(idx, [2, 4], 'int32'));
    await ctx.expectEqual('gather', ctx.own(y, [2, 4, 5], 'float32'), expected);
  }),
  c('gather.int32', 'an int32 table', async (ctx) => {
    const y = ctx.backend.gather(ctx.tensor([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), ctx.tensor([2, 0], [2], 'int32'));
    await ctx.expectEqual('gather', ctx.own(y, [2, 2], 'int32'), [5, 6, 1, 2]);
  }),
  c('scatterAdd.repeated', 'repeated indices accumulate; untouched rows are 0', async (ctx) => {
    const idx = [3, 0, 3, 3, 1, 0, 3];
    const updates = ctx.random(610).float32(7 * 3);
    const expected = new Float64Array(5 * 3);
    idx.forEach((row, i) => {
      for (let j = 0; j < 3; j++) expected[row * 3 + j]! += updates[i * 3 + j]!;
    });
    const y = ctx.backend.scatterAdd(ctx.tensor(idx, [7], 'int32'), ctx.tensor(updates, [7, 3]), 5);
    await ctx.expectClose('scatterAdd', ctx.own(y, [5, 3], 'float32'), expected);
  }),
  c('scatterAdd.nd-indices', 'indices [2,3] with updates [2,3,4] (the embedding gradient layout)', async (ctx) => {
    const idx = [1, 1, 0, 2, 1, 0];
    const updates = ctx.random(611).float32(24);
    const expected = new Float64Array(3 * 4);
    idx.forEach((row, i) => {
      for (let j = 0; j < 4; j++) expected[row * 4 + j]! += updates[i * 4 + j]!;
    });
    const y = ctx.backend.scatterAdd(ctx.tensor(idx, [2, 3], 'int32'), ctx.tensor(updates, [2, 3, 4]), 3);
    await ctx.expectClose('scatterAdd', ctx.own(y, [3, 4], 'float32'), expected);
  }),
];

// ---------------------------------------------------------------- layout

function permute(x: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): number[] {
  const outShape = perm.map((p) => shape[p]!);
  const strides = shape.map((_, d) => sizeOf(shape.slice(d + 1)));
  return Array.from({ length: sizeOf(shape) }, (_, flat) => {
    let rem = flat;
    let src = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      src += (rem % outShape[d]!) * strides[perm[d]!]!;
      rem = Math.floor(rem / outShape[d]!);
    }
    return x[src]!;
  });
}

const PERMS_3D = [
  [0, 1, 2],
  [0, 2, 1],
  [1, 0, 2],
  [1, 2, 0],
  [2, 0, 1],
  [2, 1, 0],
] as const;

const LAYOUT: ConformanceCase[] = [
  ...PERMS_3D.map((perm) =>
    c(`transpose.3d.${perm.join('')}`, `transpose [2,3,4] by [${perm.join(', ')}]`, async (ctx) => {
      const x = Array.from({ length: 24 }, (_, i) => i);
      const out = perm.map((p) => [2, 3, 4][p]!);
      await ctx.expectEqual(
        'transpose',
        ctx.own(ctx.backend.transpose(ctx.tensor(x, [2, 3, 4]), perm), out, 'float32'),
        permute(x, [2, 3, 4], perm),
      );
    }),
  ),
  c('transpose.2d-odd', 'transpose [37,41] (tile edges)', async (ctx) => {
    const x = ctx.random(700).float32(37 * 41);
    await ctx.expectEqual(
      'transpose',
      ctx.own(ctx.backend.transpose(ctx.tensor(x, [37, 41]), [1, 0]), [41, 37], 'float32'),
      permute(x, [37, 41], [1, 0]),
    );
  }),
  c('transpose.4d', 'transpose [2,3,4,5] by [3,1,0,2]', async (ctx) => {
    const x = ctx.random(701).float32(120);
    await ctx.expectEqual(
      'transpose',
      ctx.own(ctx.backend.transpose(ctx.tensor(x, [2, 3, 4, 5]), [3, 1, 0, 2]), [5, 3, 2, 4], 'float32'),
      permute(x, [2, 3, 4, 5], [3, 1, 0, 2]),
    );
  }),
  c('transpose.int32', 'transpose int32 [3,2]', async (ctx) => {
    await ctx.expectEqual(
      'transpose',
      ctx.own(ctx.backend.transpose(ctx.tensor([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), [1, 0]), [2, 3], 'int32'),
      [1, 3, 5, 2, 4, 6],
    );
  }),
  c('slice.3d', 'slice [4,5,6] at [1,0,2] size [2,5,3]', async (ctx) => {
    const x = Array.from({ length: 120 }, (_, i) => i);
    const expected: number[] = [];
    for (let i = 1; i < 3; i++) for (let j = 0; j < 5; j++) for (let k = 2; k < 5; k++) expected.push(x[(i * 5 + j) * 6 + k]!);
    await ctx.expectEqual(
      'slice',
      ctx.own(ctx.backend.slice(ctx.tensor(x, [4, 5, 6]), [1, 0, 2], [2, 5, 3]), [2, 5, 3], 'float32'),
      expected,
    );
  }),
  c('slice.edges', 'slices of size 1, the whole tensor, and an int32 tensor', async (ctx) => {
    const x = ctx.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    await ctx.expectEqual('last element', ctx.own(ctx.backend.slice(x, [1, 2], [1, 1]), [1, 1], 'float32'), [6]);
    await ctx.expectEqual('everything', ctx.own(ctx.backend.slice(x, [0, 0], [2, 3]), [2, 3], 'float32'), [1, 2, 3, 4, 5, 6]);
    const xi = ctx.tensor([1, 2, 3, 4, 5, 6], [6], 'int32');
    await ctx.expectEqual('int32', ctx.own(ctx.backend.slice(xi, [2], [3]), [3], 'int32'), [3, 4, 5]);
  }),
  ...[0, 1, 2].map((axis) =>
    c(`concat.axis${axis}`, `concat three [2,3,4]-like tensors along axis ${axis}`, async (ctx) => {
      const shapes = [0, 1, 2].map((t) => [2, 3, 4].map((d, i) => (i === axis ? t + 1 : d)));
      const parts = shapes.map((s, t) => Array.from({ length: sizeOf(s) }, (_, i) => t * 1000 + i));
      const outShape = [2, 3, 4].map((d, i) => (i === axis ? 6 : d));
      const expected: number[] = [];
      const outer = sizeOf(outShape.slice(0, axis));
      for (let o = 0; o < outer; o++) {
        shapes.forEach((s, t) => {
          const chunk = sizeOf(s.slice(axis));
          expected.push(...parts[t]!.slice(o * chunk, (o + 1) * chunk));
        });
      }
      const y = ctx.backend.concat(
        shapes.map((s, t) => ctx.tensor(parts[t]!, s)),
        axis,
        outShape,
      );
      await ctx.expectEqual('concat', ctx.own(y, outShape, 'float32'), expected);
    }),
  ),
  c('concat.int32', 'concat int32 along the last axis', async (ctx) => {
    const y = ctx.backend.concat([ctx.tensor([1, 2], [2, 1], 'int32'), ctx.tensor([3, 4, 5, 6], [2, 2], 'int32')], 1, [2, 3]);
    await ctx.expectEqual('concat', ctx.own(y, [2, 3], 'int32'), [1, 3, 4, 2, 5, 6]);
  }),
];

// ---------------------------------------------------------------- cast

const CAST: ConformanceCase[] = [
  c('cast.float32-int32', 'float32 → int32 truncates toward zero', async (ctx) => {
    const y = ctx.backend.cast(ctx.tensor([2.7, -2.7, 0.5, -0.5, 1e9, -123456.9], [6]), 'int32');
    await ctx.expectEqual('cast', ctx.own(y, [6], 'int32'), [2, -2, 0, 0, 1000000000, -123456]);
  }),
  c('cast.int32-float32', 'int32 → float32 rounds to nearest (2²⁴ + 1 → 2²⁴)', async (ctx) => {
    const y = ctx.backend.cast(ctx.tensor([16777217, -5, 2147483647], [3], 'int32'), 'float32');
    await ctx.expectEqual('cast', ctx.own(y, [3], 'float32'), [16777216, -5, 2147483648]);
  }),
  ...(['bfloat16', 'float16'] as const).map((dtype) =>
    c(`cast.${dtype}-float32`, `${dtype} storage widens exactly to float32 (normal, subnormal, ±Inf, NaN, −0)`, async (ctx) => {
      if (!ctx.supports(dtype)) ctx.skip(`the backend does not store ${dtype}`);
      const bits =
        dtype === 'bfloat16'
          ? [0x3f80, 0xc049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x7f7f]
          : [0x3c00, 0xc248, 0x0001, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x7bff];
      const decode = dtype === 'bfloat16' ? bf16ToF32 : f16ToF32;
      const y = ctx.backend.cast(ctx.tensor(bits, [bits.length], dtype), 'float32');
      await ctx.expectEqual('widen', ctx.own(y, [bits.length], 'float32'), bits.map(decode));
    }),
  ),
  ...(['bfloat16', 'float16'] as const).map((dtype) =>
    c(`cast.float32-${dtype}`, `float32 → ${dtype} rounds to nearest even`, async (ctx) => {
      if (!ctx.supports(dtype)) ctx.skip(`the backend does not store ${dtype}`);
      const x = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 1e-3, 70000, Infinity];
      const encode = dtype === 'bfloat16' ? f32ToBf16 : f32ToF16;
      const y = ctx.backend.cast(ctx.tensor(x, [x.length]), dtype);
      await ctx.expectEqual('narrow', ctx.own(y, [x.length], dtype), x.map(encode));
    }),
  ),
  ...(['int8', 'uint8'] as const).map((dtype) =>
    c(`cast.${dtype}-float32`, `${dtype} storage widens to float32`, async (ctx) => {
      if (!ctx.supports(dtype)) ctx.skip(`the backend does not store ${dtype}`);
      const x = dtype === 'int8' ? [-128, -1, 0, 127] : [0, 1, 128, 255];
      await ctx.expectEqual('widen', ctx.own(ctx.backend.cast(ctx.tensor(x, [4], dtype), 'float32'), [4], 'float32'), x);
    }),
  ),
];

// ---------------------------------------------------------------- conv2d

function convInputs(ctx: CaseContext, cc: Conv2dCase): { x: Float32Array; w: Float32Array; dy: Float32Array; yShape: number[] } {
  const r = ctx.random(cc.seed);
  const yShape = convOutputShape(cc.x, cc.w, cc.p);
  return { x: r.float32(sizeOf(cc.x)), w: r.float32(sizeOf(cc.w)), dy: r.float32(sizeOf(yShape)), yShape };
}

function conv2dCases(cc: Conv2dCase): ConformanceCase[] {
  const shapes = `x ${JSON.stringify(cc.x)}, w ${JSON.stringify(cc.w)}`;
  return [
    c(`conv2d.${cc.id}.forward`, `conv2d ${cc.title}: ${shapes}`, async (ctx) => {
      const { x, w, yShape } = convInputs(ctx, cc);
      const host = convHost(x, cc.x, w, cc.w, cc.p);
      const y = ctx.backend.conv2d(ctx.tensor(x, cc.x), ctx.tensor(w, cc.w), cc.p, yShape);
      await ctx.expectClose('conv2d', ctx.own(y, yShape, 'float32'), host.value, { magnitude: host.magnitude });
    }),
    c(`conv2d.${cc.id}.input-grad`, `conv2dBackpropInput ${cc.title}: ${shapes}`, async (ctx) => {
      const { w, dy, yShape } = convInputs(ctx, cc);
      const host = convInputGradHost(dy, w, cc.w, cc.x, cc.p);
      const dx = ctx.backend.conv2dBackpropInput(ctx.tensor(dy, yShape), ctx.tensor(w, cc.w), cc.p, cc.x);
      await ctx.expectClose('dx', ctx.own(dx, cc.x, 'float32'), host.value, { magnitude: host.magnitude });
    }),
    c(`conv2d.${cc.id}.filter-grad`, `conv2dBackpropFilter ${cc.title}: ${shapes}`, async (ctx) => {
      const { x, dy, yShape } = convInputs(ctx, cc);
      const host = convFilterGradHost(x, cc.x, dy, cc.w, cc.p);
      const dw = ctx.backend.conv2dBackpropFilter(ctx.tensor(x, cc.x), ctx.tensor(dy, yShape), cc.p, cc.w);
      await ctx.expectClose('dw', ctx.own(dw, cc.w, 'float32'), host.value, { magnitude: host.magnitude });
    }),
    c(`conv2d.${cc.id}.adjoint`, `⟨conv2d(x, w), dy⟩ = ⟨x, dx⟩ = ⟨w, dw⟩ on the backend alone (${cc.title})`, async (ctx) => {
      const { x, w, dy, yShape } = convInputs(ctx, cc);
      const b = ctx.backend;
      const [xt, wt, dyt] = [ctx.tensor(x, cc.x), ctx.tensor(w, cc.w), ctx.tensor(dy, yShape)];
      const y = await ctx.read(ctx.own(b.conv2d(xt, wt, cc.p, yShape), yShape, 'float32'));
      const dx = await ctx.read(ctx.own(b.conv2dBackpropInput(dyt, wt, cc.p, cc.x), cc.x, 'float32'));
      const dw = await ctx.read(ctx.own(b.conv2dBackpropFilter(xt, dyt, cc.p, cc.w), cc.w, 'float32'));
      const dot = (p: ArrayLike<number>, q: ArrayLike<number>) => {
        let s = 0;
        let m = 0;
        for (let i = 0; i < p.length; i++) [s, m] = [s + p[i]! * q[i]!, m + Math.abs(p[i]! * q[i]!)];
        return [s, m] as const;
      };
      const [yy, my] = dot(y, dy);
      const [xx, mx] = dot(x, dx);
      const [ww, mw] = dot(w, dw);
      const scale = Math.max(my, mx, mw);
      assertClose('⟨x, dx⟩ vs ⟨y, dy⟩', [xx], [yy], ctx.closeOptions({ magnitude: [scale], looseness: 10 }));
      assertClose('⟨w, dw⟩ vs ⟨y, dy⟩', [ww], [yy], ctx.closeOptions({ magnitude: [scale], looseness: 10 }));
    }),
  ];
}

export const primitiveTier: ConformanceTier = {
  id: T,
  title: 'primitive kernels against hand-computed and float64 host values',
  cases: [
    ...STORAGE,
    ...MATMUL,
    ...BINARY,
    ...UNARY,
    ...OTHER_ELEMENTWISE,
    ...REDUCE,
    ...SOFTMAX,
    ...INDEXING,
    ...LAYOUT,
    ...CAST,
    ...CONV2D_CASES.flatMap(conv2dCases),
  ],
};
