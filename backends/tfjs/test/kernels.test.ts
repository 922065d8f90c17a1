import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisposedTensorError, DTypeError, ShapeError, type UnaryOp } from '@dorajs/core';
import { relativeError, UNARY_HOST, weightNormHost } from '@dorajs/backend-conformance';
import { createTfjsBackend, type TfjsBackend } from '../src/index.js';
import { info, read, seeded, TF_BACKENDS, wrap } from './helpers.js';

const POSITIVE_ONLY = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt', 'reciprocal']);

describe.each(TF_BACKENDS)('kernels on tfjs-%s', (tfBackend) => {
  let be: TfjsBackend;
  beforeAll(async () => {
    be = await createTfjsBackend({ tfBackend });
  });
  afterAll(() => be.dispose());

  describe('storage', () => {
    it('round-trips float32 and int32 and copies on upload and download', async () => {
      const host = new Float32Array([1.5, -2, 3, 4]);
      const t = info(be, host, [2, 2]);
      host[0] = 99;
      const out = await be.download(t);
      expect(Array.from(out)).toEqual([1.5, -2, 3, 4]);
      out[1] = 42;
      expect(await read(be, t)).toEqual([1.5, -2, 3, 4]);
      const ints = info(be, [7, -8, 2 ** 30], [3], 'int32');
      const back = await be.download(ints);
      expect(back).toBeInstanceOf(Int32Array);
      expect(Array.from(back)).toEqual([7, -8, 2 ** 30]);
    });

    it('fills, counts live buffers and releases', async () => {
      const before = be.liveBuffers();
      const f = be.fill([2, 3], 2.5, 'float32');
      expect(be.liveBuffers()).toBe(before + 1);
      expect(await read(be, wrap(f, [2, 3]))).toEqual([2.5, 2.5, 2.5, 2.5, 2.5, 2.5]);
      be.release(f);
      expect(be.liveBuffers()).toBe(before);
      expect(() => be.release(f)).toThrow(DisposedTensorError);
    });

    it('refuses dtypes tfjs cannot store, naming them', () => {
      expect(() => be.upload(new Uint16Array(2), [2], 'bfloat16')).toThrow(DTypeError);
      expect(() => be.upload(new Uint16Array(2), [2], 'bfloat16')).toThrow(/upload: dtype 'bfloat16'/);
      expect(() => be.upload(new Float32Array(3), [2, 2], 'float32')).toThrow(ShapeError);
    });

    it('reads a handle under the shape core gives it (views are not the backend’s business)', async () => {
      const t = info(be, [1, 2, 3, 4, 5, 6], [2, 3]);
      const asColumns = wrap(t.data, [3, 2]);
      const y = be.transpose(asColumns, [1, 0]);
      expect(await read(be, wrap(y, [2, 3]))).toEqual([1, 3, 5, 2, 4, 6]);
    });
  });

  describe('matmul', () => {
    const naive = (a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number, ta = false, tb = false) => {
      const out = new Float64Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a[ta ? p * m + i : i * k + p]! * b[tb ? j * k + p : p * n + j]!;
          out[i * n + j] = s;
        }
      return out;
    };

    it.each([
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ])('2-D with transposeA=%s transposeB=%s', async (ta, tb) => {
      const [m, k, n] = [3, 5, 4];
      const a = seeded(m * k, 1);
      const b = seeded(k * n, 2);
      const y = be.matmul(info(be, a, ta ? [k, m] : [m, k]), info(be, b, tb ? [n, k] : [k, n]), { transposeA: ta, transposeB: tb }, [m, n]);
      expect(relativeError(await read(be, wrap(y, [m, n])), naive(a, b, m, k, n, ta, tb))).toBeLessThan(1e-6);
    });

    it('broadcasts leading axes both ways ([2,1,M,K] · [3,K,N])', async () => {
      const [m, k, n] = [2, 3, 2];
      const a = seeded(2 * m * k, 3);
      const b = seeded(3 * k * n, 4);
      const y = be.matmul(info(be, a, [2, 1, m, k]), info(be, b, [3, k, n]), {}, [2, 3, m, n]);
      const got = await read(be, wrap(y, [2, 3, m, n]));
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < 3; j++) {
          const expected = naive(a.subarray(i * m * k, (i + 1) * m * k), b.subarray(j * k * n, (j + 1) * k * n), m, k, n);
          expect(relativeError(got.slice((i * 3 + j) * m * n, (i * 3 + j + 1) * m * n), expected)).toBeLessThan(1e-6);
        }
    });

    it('applies one weight to a batch of activations, with transposeB ([2,3,M,K] · [N,K]ᵀ)', async () => {
      const [m, k, n] = [2, 4, 3];
      const a = seeded(6 * m * k, 5);
      const w = seeded(n * k, 6);
      const y = be.matmul(info(be, a, [2, 3, m, k]), info(be, w, [n, k]), { transposeB: true }, [2, 3, m, n]);
      const got = await read(be, wrap(y, [2, 3, m, n]));
      expect(relativeError(got, naive(a, w, 6 * m, k, n, false, true))).toBeLessThan(1e-6);
    });

    it('batched transposeA with equal batches', async () => {
      const [m, k, n] = [3, 2, 2];
      const a = seeded(2 * k * m, 7);
      const b = seeded(2 * k * n, 8);
      const y = be.matmul(info(be, a, [2, k, m]), info(be, b, [2, k, n]), { transposeA: true }, [2, m, n]);
      const got = await read(be, wrap(y, [2, m, n]));
      for (let i = 0; i < 2; i++) {
        const expected = naive(a.subarray(i * k * m, (i + 1) * k * m), b.subarray(i * k * n, (i + 1) * k * n), m, k, n, true);
        expect(relativeError(got.slice(i * m * n, (i + 1) * m * n), expected)).toBeLessThan(1e-6);
      }
    });

    it('names the shapes when they do not fit', () => {
      expect(() => be.matmul(info(be, seeded(6), [2, 3]), info(be, seeded(8), [4, 2]), {}, [2, 2])).toThrow(
        /tfjs matmul on \[2, 3\] float32, \[4, 2\] float32/,
      );
    });
  });

  describe('elementwise', () => {
    const xs = [-3, -1.5, -0.5, 0, 0.25, 1, 2.5, 4];
    it.each(Object.keys(UNARY_HOST) as UnaryOp[])('unary %s', async (op) => {
      const input = POSITIVE_ONLY.has(op) ? xs.map((x) => Math.abs(x) + 0.1) : xs;
      const y = be.unary(op, info(be, input, [2, 4]));
      const expected = input.map(UNARY_HOST[op]);
      expect(relativeError(await read(be, wrap(y, [2, 4])), expected)).toBeLessThan(2e-6);
    });

    it('isFinite and step on non-finite values', async () => {
      const v = [NaN, Infinity, -Infinity, 1];
      expect(await read(be, wrap(be.unary('isFinite', info(be, v, [4])), [4]))).toEqual([0, 0, 0, 1]);
      expect(await read(be, wrap(be.unary('step', info(be, [-Infinity, 0, 1e-30, Infinity], [4])), [4]))).toEqual([0, 0, 1, 1]);
    });

    it('special values as PyTorch (and the reference backend) give them', async () => {
      const un = async (op: UnaryOp, v: number[], dtype: 'float32' | 'int32' = 'float32') =>
        read(be, wrap(be.unary(op, info(be, v, [v.length], dtype)), [v.length], dtype));
      expect(await un('sign', [NaN, -3, 0, 1e-30, -1e-30])).toEqual([NaN, -1, 0, 1, -1]);
      for (const op of ['silu', 'gelu', 'geluTanh'] as const) {
        const [atNegInf, atNaN, atInf] = await un(op, [-Infinity, NaN, Infinity]);
        expect(atNegInf).toBeCloseTo(0, 12);
        expect(atNaN).toBeNaN();
        expect(atInf).toBe(Infinity);
      }
      expect(await un('relu', [NaN, -1])).toEqual([NaN, 0]);
      expect(await un('isFinite', [2 ** 31 - 1, -5], 'int32')).toEqual([1, 1]);
      const bin = async (op: Parameters<TfjsBackend['binary']>[0], a: number[], b: number[], dtype: 'float32' | 'int32' = 'float32') =>
        read(be, wrap(be.binary(op, info(be, a, [a.length], dtype), info(be, b, [b.length], dtype), [a.length]), [a.length], dtype));
      expect(await bin('max', [NaN, 1, Infinity], [0, NaN, NaN])).toEqual([NaN, NaN, NaN]);
      expect(await bin('min', [NaN, 1, -Infinity], [0, NaN, NaN])).toEqual([NaN, NaN, NaN]);
      // int32 division truncates toward zero and gives 0 for a zero divisor (C, and the reference backend).
      expect(await bin('div', [7, -7, 7, -7, 6, 5], [2, 2, -2, -2, -3, 0], 'int32')).toEqual([3, -3, -3, 3, -2, 0]);
      expect(await bin('pow', [2, -3, 0], [10, 3, -1], 'int32')).toEqual([1024, -27, 0]);
      const am = be.argMax(info(be, [1, NaN, 3, -Infinity, -Infinity, -Infinity], [2, 3]));
      expect(await read(be, wrap(am, [2], 'int32'))).toEqual([1, 0]);
    });

    it('binary ops broadcast, comparisons give float32 1/0', async () => {
      const a = info(be, [1, 2, 3, 4, 5, 6], [2, 3]);
      const b = info(be, [2, 2, 4], [3]);
      const run = async (op: Parameters<TfjsBackend['binary']>[0]) => {
        const h = be.binary(op, a, b, [2, 3]);
        expect(h.dtype).toBe('float32');
        return read(be, wrap(h, [2, 3]));
      };
      expect(await run('add')).toEqual([3, 4, 7, 6, 7, 10]);
      expect(await run('sub')).toEqual([-1, 0, -1, 2, 3, 2]);
      expect(await run('mul')).toEqual([2, 4, 12, 8, 10, 24]);
      expect(await run('div')).toEqual([0.5, 1, 0.75, 2, 2.5, 1.5]);
      expect(await run('max')).toEqual([2, 2, 4, 4, 5, 6]);
      expect(await run('min')).toEqual([1, 2, 3, 2, 2, 4]);
      expect(await run('pow')).toEqual([1, 4, 81, 16, 25, 1296]);
      expect(await run('greater')).toEqual([0, 0, 0, 1, 1, 1]);
      expect(await run('equal')).toEqual([0, 1, 0, 0, 0, 0]);
    });

    it('affine, keeping int32 when core says int32', async () => {
      expect(await read(be, wrap(be.affine(info(be, [1, -2], [2]), 0.5, 3), [2]))).toEqual([3.5, 2]);
      const ints = be.affine(info(be, [1, -2], [2], 'int32'), 3, 1);
      expect(ints.dtype).toBe('int32');
      expect(await read(be, wrap(ints, [2], 'int32'))).toEqual([4, -5]);
      expect(be.affine(info(be, [1, -2], [2], 'int32'), 0.5, 0).dtype).toBe('int32');
    });

    it('where broadcasts and treats any non-zero condition as true', async () => {
      const y = be.where(info(be, [0, 2, -1], [3]), info(be, [1, 2, 3, 4, 5, 6], [2, 3]), info(be, [9], [1]), [2, 3]);
      expect(await read(be, wrap(y, [2, 3]))).toEqual([9, 2, 3, 9, 5, 6]);
    });
  });

  describe('reductions', () => {
    const x = () => info(be, [1, 5, 3, -2, 8, 0], [2, 3]);
    it('sum / max / min / mean keep reduced axes', async () => {
      expect(await read(be, wrap(be.reduce('sum', x(), [1], [2, 1]), [2, 1]))).toEqual([9, 6]);
      expect(await read(be, wrap(be.reduce('max', x(), [0], [1, 3]), [1, 3]))).toEqual([1, 8, 3]);
      expect(await read(be, wrap(be.reduce('min', x(), [0, 1], [1, 1]), [1, 1]))).toEqual([-2]);
      expect(await read(be, wrap(be.reduce('mean', x(), [1], [2, 1]), [2, 1]))).toEqual([3, 2]);
    });
    it('int32 mean stays int32 as core declares', () => {
      expect(be.reduce('mean', info(be, [1, 2], [2], 'int32'), [0], [1]).dtype).toBe('int32');
    });
    it('argMax over the last axis, int32, first of ties', async () => {
      const h = be.argMax(info(be, [1, 7, 7, 9, 2, 9], [2, 3]));
      expect(h.dtype).toBe('int32');
      expect(await read(be, wrap(h, [2], 'int32'))).toEqual([1, 0]);
    });
    it('softmax and log-softmax along the last axis, stable for large logits', async () => {
      const logits = [1000, 1001, 1002, -1, 0, 1];
      const soft = await read(be, wrap(be.softmax(info(be, logits, [2, 3]), false), [2, 3]));
      const e = [Math.exp(-2), Math.exp(-1), 1];
      const z = e[0]! + e[1]! + e[2]!;
      const expected = [...e, ...e].map((v) => v / z);
      expect(relativeError(soft, expected)).toBeLessThan(1e-6);
      const logSoft = await read(be, wrap(be.softmax(info(be, logits, [2, 3]), true), [2, 3]));
      expect(relativeError(logSoft, expected.map(Math.log))).toBeLessThan(1e-6);
    });
  });

  describe('indexing and layout', () => {
    it('gather rows by int32 indices of any shape', async () => {
      const table = info(be, [0, 1, 10, 11, 20, 21], [3, 2]);
      const y = be.gather(table, info(be, [2, 0, 2, 1], [2, 2], 'int32'));
      expect(await read(be, wrap(y, [4, 2]))).toEqual([20, 21, 0, 1, 20, 21, 10, 11]);
    });
    it('scatterAdd sums repeated rows (the transpose of gather)', async () => {
      const y = be.scatterAdd(info(be, [2, 0, 2], [3], 'int32'), info(be, [1, 1, 2, 2, 3, 3], [3, 2]), 4);
      expect(await read(be, wrap(y, [4, 2]))).toEqual([2, 2, 0, 0, 4, 4, 0, 0]);
    });
    it('transpose, slice, concat and cast', async () => {
      const x = info(be, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [2, 3, 2]);
      expect(await read(be, wrap(be.transpose(x, [2, 0, 1]), [2, 2, 3]))).toEqual([0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]);
      expect(await read(be, wrap(be.slice(x, [1, 1, 0], [1, 2, 1]), [1, 2, 1]))).toEqual([8, 10]);
      const c = be.concat([info(be, [1, 2], [1, 2]), info(be, [3, 4, 5, 6], [2, 2])], 0, [3, 2]);
      expect(await read(be, wrap(c, [3, 2]))).toEqual([1, 2, 3, 4, 5, 6]);
      const i = be.cast(info(be, [1.7, -1.7, 2.5], [3]), 'int32');
      expect(i.dtype).toBe('int32');
      expect(await read(be, wrap(i, [3], 'int32'))).toEqual([1, -1, 2]);
    });
    it('int32 stays exact at the extremes, and float32 results are real float32 arrays', async () => {
      const ints = info(be, [2 ** 31 - 1, -(2 ** 31 - 1), -3], [3], 'int32');
      expect(await read(be, wrap(be.unary('neg', ints), [3], 'int32'))).toEqual([-(2 ** 31 - 1), 2 ** 31 - 1, 3]);
      expect(await read(be, wrap(be.unary('abs', ints), [3], 'int32'))).toEqual([2 ** 31 - 1, 2 ** 31 - 1, 3]);
      const asFloat = be.cast(info(be, [2 ** 24 + 1, -5], [2], 'int32'), 'float32');
      const values = await be.download(wrap(asFloat, [2]));
      expect(values).toBeInstanceOf(Float32Array);
      expect(Array.from(values)).toEqual([2 ** 24, -5]);
      const cmp = be.binary('greater', info(be, [1, 2], [2]), info(be, [2, 1], [2]), [2]);
      expect(await be.download(wrap(cmp, [2]))).toBeInstanceOf(Float32Array);
    });

    it('refuses an outShape that disagrees with the result, naming both', () => {
      expect(() => be.concat([info(be, [1, 2], [1, 2])], 0, [2, 2])).toThrow(/produced \[1, 2\], the caller expects \[2, 2\]/);
    });
  });

  describe('weightNorm', () => {
    it.each([false, true])('‖W + s·B·A‖ per output feature (transposeW=%s)', async (tw) => {
      const [out, inF, r, s] = [5, 7, 3, 0.75];
      const w = seeded(out * inF, 11);
      const a = seeded(r * inF, 12);
      const b = seeded(out * r, 13);
      const y = be.weightNorm(info(be, w, tw ? [inF, out] : [out, inF]), info(be, a, [r, inF]), info(be, b, [out, r]), s, {
        transposeW: tw,
      });
      expect(relativeError(await read(be, wrap(y, [out])), weightNormHost(w, a, b, out, inF, r, s, tw))).toBeLessThan(1e-6);
    });

    it.each([1e-25, 1e25])('rows whose squares leave float32 range (|W| ≈ %s) still get their norm', async (size) => {
      const [out, inF, r] = [3, 4, 2];
      const w = seeded(out * inF, 21).map((v) => v * size);
      const a = seeded(r * inF, 22);
      const zeros = new Float32Array(out * r);
      const y = be.weightNorm(info(be, w, [out, inF]), info(be, a, [r, inF]), info(be, zeros, [out, r]), 1, {});
      const expected = Array.from({ length: out }, (_, o) => Math.hypot(...w.subarray(o * inF, (o + 1) * inF)));
      expect(relativeError(await read(be, wrap(y, [out])), expected)).toBeLessThan(1e-6);
    });
  });

  it('says which input was released when a kernel gets a dead handle', () => {
    const a = info(be, [1, 2], [2]);
    be.release(a.data);
    expect(() => be.unary('neg', a)).toThrow(DisposedTensorError);
    expect(() => be.unary('neg', a)).toThrow(/tfjs neg: input 0 \[2\] was already released/);
  });
});
