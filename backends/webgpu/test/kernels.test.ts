/** Every kernel against a float64 reference at small shapes (edges, broadcasting, dtypes). */
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32, f32ToBf16, type BinaryOp, type DType, type TensorInfo, type UnaryOp } from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { broadcastMap, matmulRef, randn, size, strides } from './helpers/reference.js';
import { relativeError } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

type Info = TensorInfo<GpuTensor>;
const handles: Info[] = [];
function up(values: ArrayLike<number>, shape: number[], dtype: DType = 'float32'): Info {
  const arr = dtype === 'int32' ? Int32Array.from(values) : dtype === 'float32' ? Float32Array.from(values) : (values as never);
  const t = { data: be.upload(arr, shape, dtype), shape, dtype };
  handles.push(t);
  return t;
}
function wrap(data: GpuTensor, shape: readonly number[]): Info {
  const t = { data, shape, dtype: data.dtype };
  handles.push(t);
  return t;
}
async function down(data: GpuTensor, shape: readonly number[]): Promise<number[]> {
  return Array.from((await be.download(wrap(data, shape))) as ArrayLike<number>);
}

describe.skipIf(!backend)(`webgpu kernels${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('round-trips every dtype through upload/download', async () => {
    for (const [dtype, arr] of [
      ['float32', new Float32Array([1.5, -2, 3])],
      ['int32', new Int32Array([7, -8, 2 ** 30])],
      ['bfloat16', new Uint16Array([0x3f80, 0xc000, 0x4040])],
      ['float16', new Uint16Array([0x3c00, 0xc000, 0x4200, 0x1])],
      ['int8', new Int8Array([-128, 127, 5, 0, -1])],
      ['uint8', new Uint8Array([255, 0, 17])],
    ] as const) {
      const t = be.upload(arr, [arr.length], dtype);
      const back = await be.download({ data: t, shape: [arr.length], dtype });
      expect(Array.from(back as ArrayLike<number>), dtype).toEqual(Array.from(arr));
      be.release(t);
    }
  });

  it('fill writes every dtype, including packed ones with odd lengths', async () => {
    expect(await down(be.fill([2, 3], 2.5, 'float32'), [6])).toEqual([2.5, 2.5, 2.5, 2.5, 2.5, 2.5]);
    expect(await down(be.fill([3], -4, 'int32'), [3])).toEqual([-4, -4, -4]);
    expect(await down(be.fill([3], 1, 'bfloat16'), [3])).toEqual([0x3f80, 0x3f80, 0x3f80]);
    expect(await down(be.fill([5], -3, 'int8'), [5])).toEqual([-3, -3, -3, -3, -3]);
  });

  const unaryRef: Record<UnaryOp, (x: number) => number> = {
    neg: (x) => -x,
    abs: Math.abs,
    exp: Math.exp,
    log: Math.log,
    sqrt: Math.sqrt,
    rsqrt: (x) => 1 / Math.sqrt(x),
    reciprocal: (x) => 1 / x,
    square: (x) => x * x,
    relu: (x) => Math.max(x, 0),
    step: (x) => (x > 0 ? 1 : 0),
    sigmoid: (x) => 1 / (1 + Math.exp(-x)),
    silu: (x) => x / (1 + Math.exp(-x)),
    gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    geluTanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    tanh: Math.tanh,
    erf: (x) => erf(x),
    sin: Math.sin,
    cos: Math.cos,
    sign: Math.sign,
    isFinite: (x) => (Number.isFinite(x) ? 1 : 0),
  };
  function erf(x: number): number {
    // High-precision series/continued fraction is overkill: use a 1e-12-accurate Taylor sum for |x| < 6.
    let sum = 0;
    let term = x;
    for (let n = 0; n < 200; n++) {
      sum += term / (2 * n + 1);
      term *= (-x * x) / (n + 1);
      if (Math.abs(term) < 1e-17) break;
    }
    return Math.abs(x) > 5 ? Math.sign(x) : (2 / Math.sqrt(Math.PI)) * sum;
  }

  it('unary ops match the reference', async () => {
    const xs = Array.from(randn(64, 1, 4));
    xs.push(0, -0.5, 30, -30);
    const pos = xs.map((x) => Math.abs(x) + 0.1);
    for (const op of Object.keys(unaryRef) as UnaryOp[]) {
      const input = ['log', 'sqrt', 'rsqrt'].includes(op) ? pos : xs;
      const t = up(input, [input.length]);
      const got = await down(be.unary(op, t), [input.length]);
      const want = input.map((x) => unaryRef[op](Math.fround(x)));
      // GPU transcendental functions are not correctly rounded; 1e-5 is well inside the 1e-4 GPU budget.
      expect(relativeError(got, want), op).toBeLessThan(1e-5);
    }
    const inf = up([1, Infinity, -Infinity, NaN], [4]);
    expect(await down(be.unary('isFinite', inf), [4])).toEqual([1, 0, 0, 0]);
  });

  it('binary ops broadcast like numpy, with int32 and comparison dtypes', async () => {
    const a = randn(2 * 3 * 4, 2, 3);
    const b = randn(3 * 1, 3, 3).map((v) => v + Math.sign(v) * 0.5);
    const ops: [BinaryOp, (x: number, y: number) => number][] = [
      ['add', (x, y) => x + y],
      ['sub', (x, y) => x - y],
      ['mul', (x, y) => x * y],
      ['div', (x, y) => x / y],
      ['max', Math.max],
      ['min', Math.min],
      ['greater', (x, y) => (x > y ? 1 : 0)],
      ['equal', (x, y) => (x === y ? 1 : 0)],
    ];
    for (const [op, f] of ops) {
      const got = await down(be.binary(op, up(a, [2, 3, 4]), up(b, [3, 1]), [2, 3, 4]), [24]);
      expect(
        relativeError(
          got,
          broadcastMap(
            [
              [2, 3, 4],
              [3, 1],
            ],
            [a, b],
            [2, 3, 4],
            f,
          ),
        ),
        op,
      ).toBeLessThan(1e-6);
    }
    const p = await down(be.binary('pow', up([2, -2, -2, 0, 4], [5]), up([3, 3, 2, 0, 0.5], [5]), [5]), [5]);
    expect(p).toEqual([8, -8, 4, 1, 2]);
    const ia = up([7, -7, 9, 4], [4], 'int32');
    const ib = up([2, 2, 0, 5], [4], 'int32');
    const q = be.binary('div', ia, ib, [4]);
    expect(q.dtype).toBe('int32');
    expect(await down(q, [4])).toEqual([3, -3, 0, 0]);
    const cmp = be.binary('greater', ia, ib, [4]);
    expect(cmp.dtype).toBe('float32');
    expect(await down(cmp, [4])).toEqual([1, 0, 1, 0]);
  });

  it('affine and where', async () => {
    expect(await down(be.affine(up([1, 2, -3], [3]), 2, 0.5), [3])).toEqual([2.5, 4.5, -5.5]);
    const c = up([1, 0, 1, 0, 0, 1], [2, 3]);
    const got = await down(be.where(c, up([10, 20, 30], [3]), up([-1], [1]), [2, 3]), [6]);
    expect(got).toEqual([10, -1, 30, -1, -1, 30]);
  });

  it('reduce over trailing, leading and middle axes', async () => {
    const shape = [3, 4, 40];
    const x = randn(size(shape), 4, 2);
    const st = strides(shape);
    const cases: [number[], number[]][] = [
      [[2], [3, 4, 1]],
      [[0], [1, 4, 40]],
      [[1], [3, 1, 40]],
      [
        [0, 2],
        [1, 4, 1],
      ],
      [
        [1, 2],
        [3, 1, 1],
      ],
    ];
    for (const op of ['sum', 'max', 'min', 'mean'] as const) {
      for (const [axes, outShape] of cases) {
        const n = size(outShape);
        const want = new Float64Array(n);
        const os = strides(outShape);
        const init = op === 'max' ? -Infinity : op === 'min' ? Infinity : 0;
        want.fill(init);
        const count = axes.reduce((p, a) => p * shape[a]!, 1);
        for (let i = 0; i < x.length; i++) {
          let o = 0;
          for (let d = 0; d < 3; d++) if (!axes.includes(d)) o += (Math.floor(i / st[d]!) % shape[d]!) * os[d]!;
          const v = x[i]!;
          want[o] = op === 'max' ? Math.max(want[o]!, v) : op === 'min' ? Math.min(want[o]!, v) : want[o]! + v;
        }
        if (op === 'mean') for (let i = 0; i < n; i++) want[i]! /= count;
        const got = await down(be.reduce(op, up(x, shape), axes, outShape), outShape);
        expect(relativeError(got, want), `${op} ${axes}`).toBeLessThan(1e-6);
      }
    }
    const ints = be.reduce('sum', up([1, 2, 3, 4], [2, 2], 'int32'), [1], [2, 1]);
    expect(ints.dtype).toBe('int32');
    expect(await down(ints, [2])).toEqual([3, 7]);
  });

  it('softmax, log-softmax and argMax along the last axis', async () => {
    const x = randn(5 * 300, 5, 6);
    x[7] = 50;
    const sm = await down(be.softmax(up(x, [5, 300]), false), [1500]);
    const lsm = await down(be.softmax(up(x, [5, 300]), true), [1500]);
    const am = await down(be.argMax(up(x, [5, 300])), [5]);
    for (let r = 0; r < 5; r++) {
      const row = Array.from(x.subarray(r * 300, r * 300 + 300));
      const m = Math.max(...row);
      const s = row.reduce((p, v) => p + Math.exp(v - m), 0);
      const want = row.map((v) => Math.exp(v - m) / s);
      expect(relativeError(sm.slice(r * 300, r * 300 + 300), want)).toBeLessThan(1e-5);
      expect(
        relativeError(
          lsm.slice(r * 300, r * 300 + 300),
          row.map((v) => v - m - Math.log(s)),
        ),
      ).toBeLessThan(1e-5);
      expect(am[r]).toBe(row.indexOf(m));
    }
    expect(await down(be.argMax(up([1, 3, 3, 2], [4])), [])).toEqual([1]);
  });

  it('gather and scatterAdd (repeated and out-of-range indices)', async () => {
    const table = randn(6 * 5, 7);
    const idx = up([5, 0, 5, 2], [2, 2], 'int32');
    const got = await down(be.gather(up(table, [6, 5]), idx), [20]);
    const want = [5, 0, 5, 2].flatMap((r) => Array.from(table.subarray(r * 5, r * 5 + 5)));
    expect(got).toEqual(want);
    const upd = randn(4 * 3, 8);
    const sa = await down(be.scatterAdd(idx, up(upd, [4, 3]), 6), [18]);
    const ref = new Float64Array(18);
    [5, 0, 5, 2].forEach((r, i) => {
      for (let c = 0; c < 3; c++) ref[r * 3 + c]! += upd[i * 3 + c]!;
    });
    expect(relativeError(sa, ref)).toBeLessThan(1e-6);
  });

  it('transpose, slice and concat keep exact bits for every dtype', async () => {
    const vals = Array.from({ length: 24 }, (_, i) => i + 1);
    for (const dtype of ['float32', 'int32', 'bfloat16', 'int8'] as DType[]) {
      const arr = dtype === 'bfloat16' ? Uint16Array.from(vals, (v) => f32ToBf16(v)) : dtype === 'int8' ? Int8Array.from(vals) : vals;
      const decode = (xs: number[]) => (dtype === 'bfloat16' ? xs.map(bf16ToF32) : xs);
      const t = up(arr, [2, 3, 4], dtype);
      const tr = decode(await down(be.transpose(t, [2, 0, 1]), [24]));
      const want: number[] = [];
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) want.push(vals[i * 12 + j * 4 + k]!);
      expect(tr, dtype).toEqual(want);
      const sl = decode(await down(be.slice(t, [1, 1, 1], [1, 2, 3]), [6]));
      expect(sl, dtype).toEqual([18, 19, 20, 22, 23, 24]);
      const cat = decode(await down(be.concat([t, up(arr.slice(0, 6) as never, [2, 3, 1], dtype)], 2, [2, 3, 5]), [30]));
      const cw: number[] = [];
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) cw.push(...vals.slice(i * 12 + j * 4, i * 12 + j * 4 + 4), vals[i * 3 + j]!);
      expect(cat, dtype).toEqual(cw);
    }
    // more inputs than one dispatch binds
    const parts = Array.from({ length: 9 }, (_, i) => up([i, i + 10], [1, 2]));
    expect(await down(be.concat(parts, 0, [9, 2]), [18])).toEqual(Array.from({ length: 9 }, (_, i) => [i, i + 10]).flat());
  });

  it('cast between float32, int32 and the narrow storage dtypes', async () => {
    const x = up([1.5, -2.7, 3.25, 1e-3, 300], [5]);
    expect(await down(be.cast(x, 'int32'), [5])).toEqual([1, -2, 3, 0, 300]);
    const bf = be.cast(x, 'bfloat16');
    expect(await down(bf, [5])).toEqual([1.5, -2.7, 3.25, 1e-3, 300].map(f32ToBf16));
    expect(await down(be.cast(wrap(bf, [5]), 'float32'), [5])).toEqual([1.5, -2.7, 3.25, 1e-3, 300].map((v) => bf16ToF32(f32ToBf16(v))));
    expect(await down(be.cast(x, 'float16'), [5])).toEqual([0x3e00, 0xc166, 0x4280, 0x1419, 0x5cb0]);
    expect(await down(be.cast(up([-1, 200, 5], [3], 'int32'), 'int8'), [3])).toEqual([-1, -56, 5]);
  });

  it.each([
    ['tiled aligned', [2, 64, 48], [48, 64], false, false],
    ['tiled edges', [37, 45], [45, 29], false, false],
    ['tiled transposes', [45, 37], [29, 45], true, true],
    ['tiled large tile', [256, 64], [64, 256], false, false],
    ['batch broadcast', [3, 1, 5, 40], [4, 40, 6], false, false],
    ['gemv Bᵀ', [1, 300], [77, 300], false, true],
    ['gemv', [2, 1, 300], [300, 77], false, false],
    ['small K', [33, 8], [8, 50], false, false],
    ['small K transposed', [8, 33], [50, 8], true, true],
  ] as const)('matmul %s', async (_name, aShape, bShape, transA, transB) => {
    const a = randn(size(aShape), 11);
    const b = randn(size(bShape), 12);
    const ref = matmulRef(a, aShape, b, bShape, transA, transB);
    const got = await down(
      be.matmul(up(a, [...aShape]), up(b, [...bShape]), { transposeA: transA, transposeB: transB }, ref.shape),
      ref.shape,
    );
    expect(relativeError(got, ref.out)).toBeLessThan(1e-5);
  });

  it.each([
    ['tiled', [128, 64], [64, 128], false],
    ['tiled Bᵀ', [64, 64], [64, 64], true],
    ['tiled edges', [30, 50], [50, 20], false],
    ['gemv Bᵀ', [1, 64], [48, 64], true],
    ['small K', [9, 8], [8, 40], false],
  ] as const)('matmul with bf16-stored B (%s) equals float32 B on the same values', async (_n, aShape, bShape, transB) => {
    const a = randn(size(aShape), 31);
    const bits = Uint16Array.from(randn(size(bShape), 32), (v) => f32ToBf16(v));
    const rounded = Float32Array.from(bits, bf16ToF32);
    const ref = matmulRef(a, aShape, rounded, bShape, false, transB);
    const got = await down(be.matmul(up(a, [...aShape]), up(bits, [...bShape], 'bfloat16'), { transposeB: transB }, ref.shape), ref.shape);
    expect(relativeError(got, ref.out)).toBeLessThan(1e-5);
  });

  it('conv2d and both gradients (stride, padding, dilation, groups)', async () => {
    const p = { stride: [2, 1] as [number, number], padding: [1, 2] as [number, number], dilation: [1, 2] as [number, number], groups: 2 };
    const [N, C, H, W, O, KH, KW] = [2, 4, 7, 6, 6, 3, 2];
    const OH = Math.floor((H + 2 * p.padding[0] - p.dilation[0] * (KH - 1) - 1) / p.stride[0]) + 1;
    const OW = Math.floor((W + 2 * p.padding[1] - p.dilation[1] * (KW - 1) - 1) / p.stride[1]) + 1;
    const x = randn(N * C * H * W, 21);
    const w = randn(O * (C / 2) * KH * KW, 22);
    const dy = randn(N * O * OH * OW, 23);
    const y = new Float64Array(N * O * OH * OW);
    const dx = new Float64Array(x.length);
    const dw = new Float64Array(w.length);
    const cpg = C / 2;
    const opg = O / 2;
    for (let n = 0; n < N; n++)
      for (let o = 0; o < O; o++)
        for (let oh = 0; oh < OH; oh++)
          for (let ow = 0; ow < OW; ow++) {
            const yi = ((n * O + o) * OH + oh) * OW + ow;
            for (let c = 0; c < cpg; c++)
              for (let kh = 0; kh < KH; kh++)
                for (let kw = 0; kw < KW; kw++) {
                  const ih = oh * p.stride[0] + kh * p.dilation[0] - p.padding[0];
                  const iw = ow * p.stride[1] + kw * p.dilation[1] - p.padding[1];
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  const xi = ((n * C + Math.floor(o / opg) * cpg + c) * H + ih) * W + iw;
                  const wi = ((o * cpg + c) * KH + kh) * KW + kw;
                  y[yi]! += x[xi]! * w[wi]!;
                  dx[xi]! += dy[yi]! * w[wi]!;
                  dw[wi]! += x[xi]! * dy[yi]!;
                }
          }
    const xs = [N, C, H, W];
    const ws = [O, cpg, KH, KW];
    const ys = [N, O, OH, OW];
    expect(relativeError(await down(be.conv2d(up(x, xs), up(w, ws), p, ys), ys), y)).toBeLessThan(1e-5);
    expect(relativeError(await down(be.conv2dBackpropInput(up(dy, ys), up(w, ws), p, xs), xs), dx)).toBeLessThan(1e-5);
    expect(relativeError(await down(be.conv2dBackpropFilter(up(x, xs), up(dy, ys), p, ws), ws), dw)).toBeLessThan(1e-5);
  });

  it('releases every buffer it hands out', () => {
    for (const h of handles.splice(0)) be.release(h.data);
    expect(be.liveBuffers()).toBe(0);
  });
});
