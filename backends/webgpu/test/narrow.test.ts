/**
 * Narrow weights on WebGPU, past what the conformance tier's shapes reach: the vec4 tiled program with a
 * packed B (x·Wᵀ and dY·W at M = 20), several rows of x through the row-streaming GEMV, shapes whose rows
 * are not multiples of 4 (the one-thread-per-output program), every weight-norm program with a packed W
 * (rows, tiles, transposed, joined to a deferred GEMV), never allocating W as float32; and bad packed input.
 * References: float64 over the dequantized values bitsandbytes' formulas give (`dequantizeHost`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  dequantizeHost,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  ops,
  QuantizationError,
  QuantizedWeight,
  type QuantizedInfo,
  type Tensor,
  tensor,
  type Weight,
} from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { matmulRef, randn } from './helpers/reference.js';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());

type Format = 'bfloat16' | 'float16' | 'nf4' | 'fp4' | 'nf4-double' | 'int8';
const FORMATS: readonly Format[] = ['bfloat16', 'float16', 'nf4', 'fp4', 'nf4-double', 'int8'];

/** A narrow W [rows, cols] on the GPU and its exact float32 values. */
async function narrow(format: Format, rows: number, cols: number, seed: number): Promise<{ w: Weight; values: Float32Array }> {
  const src = randn(rows * cols, seed, 0.05);
  src[1] = 0.8;
  if (format === 'bfloat16' || format === 'float16') {
    const [enc, dec] = format === 'bfloat16' ? [f32ToBf16, bf16ToF32] : [f32ToF16, f16ToF32];
    const bits = Uint16Array.from(src, enc);
    return { w: tensor(bits, [rows, cols], { backend: be, dtype: format }), values: Float32Array.from(bits, dec) };
  }
  const w = QuantizedWeight.quantize(src, [rows, cols], be, {
    format: format === 'nf4-double' ? 'nf4' : format,
    doubleQuant: format === 'nf4-double',
    name: `test.${format}`,
  });
  return { w, values: dequantizeHost(await w.toHost()) };
}

const live: (Tensor | QuantizedWeight)[] = [];
function keep<T extends Tensor | QuantizedWeight>(t: T): T {
  live.push(t);
  return t;
}
function freeAll(): void {
  for (const t of live.splice(0)) t.dispose();
}

describe.skipIf(!backend)(`webgpu narrow weights${skipReason ? ` (${skipReason})` : ''}`, () => {
  describe.each(FORMATS)('%s W', (format) => {
    it.each([
      // [rows (N), cols (K), M, transposeW]: tiled vec4 at M = 20, row-streaming GEMVs at M = 3, odd shapes.
      [72, 200, 20, true],
      [72, 200, 20, false],
      [72, 200, 3, true],
      [30, 50, 6, true],
      [30, 50, 6, false],
    ] as const)('W [%i, %i], M = %i, transposeW = %s: against float64, W never float32', async (rows, cols, m, transposeW) => {
      const { w, values } = await narrow(format, rows, cols, rows + cols);
      keep(w as Tensor);
      const inner = transposeW ? cols : rows;
      const xs = randn(m * inner, 7);
      const x = keep(tensor(xs, [m, inner], { backend: be }));
      be.resetLargestRequest();
      const y = keep(ops.narrowMatmul(x, w, transposeW));
      const got = await y.data();
      expect(be.stats().largestRequest).toBeLessThan(rows * cols * 4);
      const ref = matmulRef(xs, [m, inner], values, [rows, cols], false, transposeW);
      expect(relativeError(got, ref.out)).toBeLessThan(1e-5);
      freeAll();
    });

    it.each([
      ['rows', false, 128],
      ['tiles', false, 128],
      ['tiles', true, 128],
      ['tiles', false, 50],
      ['tiles', true, 50],
    ] as const)('weight norm (%s, transposeW = %s, cols %i) against float64', async (variant, transposeW, cols) => {
      const [rows, r] = [40, 8];
      const { w, values } = await narrow(format, rows, cols, 11);
      keep(w as Tensor);
      const [out, inF] = transposeW ? [cols, rows] : [rows, cols];
      const a = randn(r * inF, 12, 0.1);
      const b = randn(out * r, 13, 0.1);
      be.setWeightNormVariant(variant);
      be.resetLargestRequest();
      const n = keep(
        ops.weightNorm(w, keep(tensor(a, [r, inF], { backend: be })), keep(tensor(b, [out, r], { backend: be })), 0.5, { transposeW }),
      );
      const got = await n.data();
      be.setWeightNormVariant('auto');
      expect(be.stats().largestRequest).toBeLessThan(rows * cols * 4);
      expect(relativeError(got, weightNormHost(values, a, b, out, inF, r, 0.5, transposeW))).toBeLessThan(1e-5);
      freeAll();
    });
  });

  it('matmulWeightNorm over packed W: the GEMV and the weight norm from one read of W (DoRA decode)', async () => {
    const [rows, cols, r] = [64, 256, 4];
    const { w, values } = await narrow('nf4', rows, cols, 21);
    keep(w as Tensor);
    const xs = randn(cols, 22);
    const a = randn(r * cols, 23, 0.1);
    const b = randn(rows * r, 24, 0.1);
    const fusedBefore = be.stats().fused;
    const [xt, at, bt] = [
      keep(tensor(xs, [1, cols], { backend: be })),
      keep(tensor(a, [r, cols], { backend: be })),
      keep(tensor(b, [rows, r], { backend: be })),
    ];
    const shared = be.matmulWeightNorm(xt.info as never, ops.weightInfo(w) as never, at.info as never, bt.info as never, 2, {})!;
    expect(be.stats().fused).toBe(fusedBefore + 1);
    const y = await be.download({ data: shared.base, shape: [1, rows], dtype: 'float32' });
    const n = await be.download({ data: shared.norm, shape: [rows], dtype: 'float32' });
    expect(relativeError(y as Float32Array, matmulRef(xs, [1, cols], values, [rows, cols], false, true).out)).toBeLessThan(1e-5);
    expect(relativeError(n as Float32Array, weightNormHost(values, a, b, rows, cols, r, 2, false))).toBeLessThan(1e-5);
    be.release(shared.base);
    be.release(shared.norm);
    freeAll();
  });

  describe('bad packed input: a typed error naming the weight, nothing recorded', () => {
    const up = (values: Uint8Array | Int8Array | Float32Array, dtype: 'uint8' | 'int8' | 'float32') => ({
      data: be.upload(values, [values.length], dtype),
      shape: [values.length],
      dtype,
    });
    const x = () => ({ data: be.upload(new Float32Array(128), [1, 128], 'float32'), shape: [1, 128], dtype: 'float32' as const });
    const info = (over: Partial<QuantizedInfo<GpuTensor>>): QuantizedInfo<GpuTensor> => ({
      format: 'nf4',
      shape: [4, 128],
      data: up(new Uint8Array(256), 'uint8'),
      scales: up(new Float32Array(8), 'float32'),
      blocksize: 64,
      ...over,
    });
    it.each([
      [
        'a packed length that does not fit the shape',
        { data: up(new Uint8Array(255), 'uint8') },
        /packed nf4 data has 255 elements, expected 256/,
      ],
      ['an absmax of the wrong length', { scales: up(new Float32Array(7), 'float32') }, /absmax has 7 elements, expected 8/],
      ['an unsupported block size', { blocksize: 32, scales: up(new Float32Array(16), 'float32') }, /block size 32 is not supported/],
      ['an unsupported quant type', { format: 'nf3' as 'nf4' }, /quant type 'nf3' is not supported/],
      [
        'int8 data of the wrong length',
        { format: 'int8' as const, data: up(new Int8Array(500), 'int8'), scales: up(new Float32Array(4), 'float32') },
        /int8 data has 500 elements, expected 512/,
      ],
      [
        'int8 with an SCB per element',
        { format: 'int8' as const, data: up(new Int8Array(512), 'int8'), scales: up(new Float32Array(512), 'float32') },
        /SCB has 512 elements, expected 4/,
      ],
    ])('%s', (_what, over, message) => {
      const q = info(over);
      const dispatches = be.stats().dispatches;
      const attempt = () => be.matmulNarrow(x(), q, true, [1, 4]);
      expect(attempt).toThrow(QuantizationError);
      expect(attempt).toThrow(/webgpu matmulNarrow: \w+ W \[4, 128\]: /);
      expect(attempt).toThrow(message);
      expect(() => be.gatherNarrow(q, { data: be.upload(new Int32Array([0]), [1], 'int32'), shape: [1], dtype: 'int32' })).toThrow(
        QuantizationError,
      );
      expect(be.stats().dispatches).toBe(dispatches);
    });
  });
});
