/** CPU-specific behaviour the conformance suite leaves open (int32 rules, errors, layouts it does not pin). */
import { ConfigError, DTypeError, ShapeError } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../src/index.js';
import { down, up } from './helpers.js';

const b = createCpuBackend();
const conv = { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 } as const;

describe('int32 arithmetic', () => {
  it('truncates division toward zero, wraps multiplication, keeps int32', async () => {
    const x = up(b, [7, -7, 2147483647, 5], [4], 'int32');
    const y = up(b, [2, 2, 2, 0], [4], 'int32');
    expect(await down(b, b.binary('div', x, y, [4]), [4], 'int32')).toEqual([3, -3, 1073741823, 0]);
    expect(await down(b, b.binary('mul', x, y, [4]), [4], 'int32')).toEqual([14, -14, -2, 0]);
    expect(await down(b, b.binary('greater', x, y, [4]), [4])).toEqual([1, 0, 1, 1]);
    // 7 − 7 + (2³¹ − 1) + 5 wraps, as int32 arithmetic does in C and PyTorch.
    expect(await down(b, b.reduce('sum', x, [0], [1]), [1], 'int32')).toEqual([-2147483644]);
  });

  it('rejects float-only ops on int32 and mixed dtypes', () => {
    const x = up(b, [1], [1], 'int32');
    const f = up(b, [1], [1]);
    expect(() => b.unary('exp', x)).toThrow(DTypeError);
    expect(() => b.reduce('mean', x, [0], [1])).toThrow(DTypeError);
    expect(() => b.binary('add', x, f, [1])).toThrow(/dtypes differ/);
    expect(() => b.matmul(x, x, {}, [1])).toThrow(DTypeError);
  });
});

describe('cast', () => {
  it('truncates toward zero and wraps into narrow integers; NaN becomes 0', async () => {
    const x = up(b, [2.7, -2.7, NaN, 300.5, -129], [5]);
    expect(await down(b, b.cast(x, 'int32'), [5], 'int32')).toEqual([2, -2, 0, 300, -129]);
    expect(await down(b, b.cast(x, 'uint8'), [5], 'uint8')).toEqual([2, 254, 0, 44, 127]);
    expect(await down(b, b.cast(x, 'int8'), [5], 'int8')).toEqual([2, -2, 0, 44, 127]);
  });

  it('narrows float32 to bf16/f16 with round-to-nearest-even and widens back', async () => {
    const x = up(b, [1 + 2 ** -8, 1 + 3 * 2 ** -8, 65520], [3]);
    const bf = b.cast(x, 'bfloat16');
    expect(await down(b, bf, [3], 'bfloat16')).toEqual([0x3f80, 0x3f82, 0x4780]);
    const h = b.cast(x, 'float16');
    expect(await down(b, b.cast({ data: h, shape: [3], dtype: 'float16' }, 'float32'), [3])).toEqual([1.00390625, 1.01171875, Infinity]);
  });
});

describe('gather', () => {
  it.each([1, 2, 8, 9, 33])('copies rows of %i columns (narrow code-table rows element by element), float32 and int32', async (cols) => {
    const rows = 7;
    const idx = [6, 0, 3, 3, 1, 6, 2, 5];
    for (const dtype of ['float32', 'int32'] as const) {
      const table = Array.from({ length: rows * cols }, (_, i) => (dtype === 'int32' ? i * 3 - 50 : i * 0.37 - 5));
      const want = idx.flatMap((r) => table.slice(r * cols, (r + 1) * cols));
      const got = await down(b, b.gather(up(b, table, [rows, cols], dtype), up(b, idx, [idx.length], 'int32')), [idx.length, cols], dtype);
      expect(got).toEqual(dtype === 'float32' ? Array.from(Float32Array.from(want)) : want);
    }
    expect(() => b.gather(up(b, new Array(rows * cols).fill(0), [rows, cols]), up(b, [0, rows], [2], 'int32'))).toThrow(
      /index 7 at position 1/,
    );
  });
});

describe('argument checks name the op and shapes', () => {
  it('gather and scatterAdd refuse indices outside the table', () => {
    const table = up(b, [1, 2, 3, 4], [2, 2]);
    expect(() => b.gather(table, up(b, [0, 2], [2], 'int32'))).toThrow(ConfigError);
    expect(() => b.gather(table, up(b, [-1], [1], 'int32'))).toThrow(/index -1 at position 0/);
    expect(() => b.scatterAdd(up(b, [3], [1], 'int32'), up(b, [1, 1], [1, 2]), 3)).toThrow(/outside a table of 3 rows/);
  });

  it('matmul checks inner dimensions, batch broadcast and the claimed output, leaking nothing when it refuses', () => {
    // Its own backend, releasing what it uploads, so the live count can show a leaked output.
    const be = createCpuBackend();
    const a = up(be, new Array(6).fill(1), [2, 3]);
    const c = up(be, new Array(6).fill(1), [2, 3]);
    expect(be.liveBuffers()).toBe(2);
    expect(() => be.matmul(a, c, {}, [2, 3])).toThrow(/inner dimensions differ \(3 and 2\)/);
    expect(() => be.matmul(a, c, { transposeB: true }, [2, 3])).toThrow(/expected output \[2, 2\]/);
    expect(be.liveBuffers()).toBe(2);
    be.release(a.data);
    be.release(c.data);
    expect(be.liveBuffers()).toBe(0);
    be.dispose();
  });

  it('binary and where check the claimed broadcast shape', () => {
    const a = up(b, [1, 2, 3], [3]);
    const c = up(b, [1, 2], [2]);
    expect(() => b.binary('add', a, c, [3])).toThrow(ShapeError);
    expect(() => b.binary('add', a, a, [2, 3])).toThrow(/broadcast to \[3\], not \[2, 3\]/);
  });

  it('conv2d checks groups, fit and the output shape', () => {
    const x = up(b, new Array(2 * 3 * 4 * 4).fill(1), [2, 3, 4, 4]);
    const w = up(b, new Array(4 * 3 * 3 * 3).fill(1), [4, 3, 3, 3]);
    expect(() => b.conv2d(x, w, { ...conv, groups: 2 }, [2, 4, 2, 2])).toThrow(/do not split into 2 groups/);
    expect(() => b.conv2d(x, w, conv, [2, 4, 3, 3])).toThrow(/output is \[2, 4, 2, 2\]/);
    expect(() => b.conv2d(x, w, { ...conv, stride: [0, 1] }, [2, 4, 2, 2])).toThrow(/positive integers/);
    const big = up(b, new Array(4 * 3 * 5 * 5).fill(1), [4, 3, 5, 5]);
    expect(() => b.conv2d(x, big, conv, [2, 4, 0, 0])).toThrow(/does not fit/);
  });

  it('reduce checks its axes and output', () => {
    const x = up(b, new Array(6).fill(1), [2, 3]);
    expect(() => b.reduce('sum', x, [1, 0], [1, 1])).toThrow(/sorted, unique/);
    expect(() => b.reduce('sum', x, [1], [2])).toThrow(/gives \[2, 1\]/);
  });
});

describe('layouts the suite does not pin', () => {
  it('reduces non-adjacent axes of a 4-D tensor', async () => {
    const values = Array.from({ length: 2 * 3 * 2 * 2 }, (_, i) => i);
    const x = up(b, values, [2, 3, 2, 2]);
    const out = await down(b, b.reduce('sum', x, [0, 2], [1, 3, 1, 2]), [1, 3, 1, 2]);
    const expected = [0, 1, 2].flatMap((c) =>
      [0, 1].map((w) => [0, 1].reduce((s, n) => s + [0, 1].reduce((t, h) => t + values[((n * 3 + c) * 2 + h) * 2 + w]!, 0), 0)),
    );
    expect(out).toEqual(expected);
  });

  it('weightNorm takes 2-D operands only (core flattens conv weights) and refuses sizes that disagree', () => {
    const w = up(b, new Array(16).fill(1), [2, 2, 2, 2]);
    const a = up(b, new Array(8).fill(1), [1, 2, 2, 2]);
    const bb = up(b, [1, -1], [2, 1, 1, 1]);
    expect(() => b.weightNorm(w, a, bb, 0.5, {})).toThrow(/W \[2, 2, 2, 2\], A \[1, 2, 2, 2\], B \[2, 1, 1, 1\] do not fit/);
    const w2 = up(b, new Array(8).fill(1), [2, 4]);
    const a2 = up(b, new Array(6).fill(1), [2, 3]);
    const b2 = up(b, new Array(4).fill(1), [2, 2]);
    expect(() => b.weightNorm(w2, a2, b2, 1, {})).toThrow(ShapeError);
    expect(() => b.weightNorm(w2, a2, b2, 1, { transposeW: true })).toThrow(ShapeError);
  });

  it('transposes rank-4 tensors of every dtype', async () => {
    const x = up(
      b,
      Array.from({ length: 24 }, (_, i) => i),
      [2, 3, 4, 1],
      'int8',
    );
    const t = b.transpose(x, [2, 0, 3, 1]);
    const out = await down(b, t, [4, 2, 1, 3], 'int8');
    expect(out.slice(0, 6)).toEqual([0, 4, 8, 12, 16, 20]);
  });
});

describe('unknown ops', () => {
  it('are a MissingKernelError naming the op, never a silent zero', () => {
    const x = up(b, [1, 2], [2]);
    expect(() => b.unary('cbrt' as never, x)).toThrow(/no kernel 'cbrt'/);
    expect(() => b.binary('mod' as never, x, x, [2])).toThrow(/no kernel 'mod'/);
    expect(() => b.reduce('prod' as never, x, [0], [1])).toThrow(/no kernel 'reduce 'prod''/);
    expect(() => b.cast(x, 'float64' as never)).toThrow(DTypeError);
  });
});
