/**
 * Tensors larger than one buffer: a 4 KiB `maxBufferBytes` splits every weight here over several buffers,
 * and each kernel that touches weights must give what it gives on one buffer (float64 references).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32, dequantizeHost, f32ToBf16, type DType, type QuantizedInfo, quantizeHost, type TensorInfo } from '@dorajs/core';
import { SplitTensorError, type GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { matmulRef, randn } from './helpers/reference.js';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu({ maxBufferBytes: 4096 });
const be = backend!;
afterAll(() => backend?.dispose());

type Info = TensorInfo<GpuTensor>;
const made: Info[] = [];
function up(values: Float32Array | Uint16Array | Int32Array | Int8Array, shape: number[], dtype: DType = 'float32'): Info {
  const t = { data: be.upload(values, shape, dtype), shape, dtype };
  made.push(t);
  return t;
}
function info(data: GpuTensor, shape: readonly number[]): Info {
  const t = { data, shape, dtype: data.dtype };
  made.push(t);
  return t;
}
async function down(data: GpuTensor, shape: readonly number[]): Promise<Float32Array> {
  return (await be.download(info(data, shape))) as Float32Array;
}
function bf16(values: Float32Array): { bits: Uint16Array; rounded: Float32Array } {
  const bits = Uint16Array.from(values, (v) => f32ToBf16(v));
  return { bits, rounded: Float32Array.from(bits, bf16ToF32) };
}

// W [100, 24]: at 4 bytes per element 32 rows fit 4 KiB, so 4 parts (32, 32, 32, 4) in every dtype.
const [N, K] = [100, 24];
const w = randn(N * K, 1);
const wb = bf16(w);

describe.skipIf(!backend)(`webgpu split tensors${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('stores a tensor over the buffers it needs and reads it back exactly, in every dtype', async () => {
    expect(be.maxBufferBytes).toBe(4096);
    for (const [dtype, arr] of [
      ['float32', w],
      ['bfloat16', wb.bits],
      ['int32', Int32Array.from({ length: N * K }, (_, i) => i * 7 - 300)],
      ['int8', Int8Array.from({ length: 5000 }, (_, i) => (i % 255) - 127)],
    ] as const) {
      const t = up(arr, [arr.length], dtype);
      expect(be.buffersOf(t.data), dtype).toBeGreaterThan(1);
      expect(Array.from((await be.download(t)) as ArrayLike<number>), dtype).toEqual(Array.from(arr));
    }
    const W = up(w, [N, K]);
    expect(be.buffersOf(W.data)).toBe(4);
    const small = up(randn(8, 2), [2, 4]);
    expect(be.buffersOf(small.data)).toBe(1);
  });

  it.each([
    ['float32', 1],
    ['bfloat16', 1],
    ['float32', 3],
    ['bfloat16', 5],
  ] as const)('x·Wᵀ with %s W split by output features, T=%i (GEMV and tiled)', async (dtype, T) => {
    const x = randn(T * K, 3);
    const W = dtype === 'float32' ? up(w, [N, K]) : up(wb.bits, [N, K], 'bfloat16');
    const values = dtype === 'float32' ? w : wb.rounded;
    const y = be.matmul(up(x, [T, K]), W, { transposeB: true }, [T, N]);
    const ref = matmulRef(x, [T, K], values, [N, K], false, true);
    expect(relativeError(await down(y, [T, N]), ref.out)).toBeLessThan(1e-5);
  });

  it('dY·W (the input gradient) with W split along the reduced axis, and batched dY', async () => {
    const dy = randn(2 * 3 * N, 4);
    const W = up(wb.bits, [N, K], 'bfloat16');
    const g = be.matmul(up(dy, [2, 3, N]), W, {}, [2, 3, K]);
    const ref = matmulRef(dy, [2, 3, N], wb.rounded, [N, K], false, false);
    expect(relativeError(await down(g, [2, 3, K]), ref.out)).toBeLessThan(1e-5);
  });

  it('W as the left operand, plain and transposed', async () => {
    const W = up(w, [N, K]);
    const b = randn(K * 5, 5);
    const y = be.matmul(W, up(b, [K, 5]), {}, [N, 5]);
    expect(relativeError(await down(y, [N, 5]), matmulRef(w, [N, K], b, [K, 5], false, false).out)).toBeLessThan(1e-5);
    const c = randn(6 * N, 6);
    const z = be.matmul(W, up(c, [6, N]), { transposeA: true, transposeB: true }, [K, 6]);
    expect(relativeError(await down(z, [K, 6]), matmulRef(w, [N, K], c, [6, N], true, true).out)).toBeLessThan(1e-5);
  });

  it('gathers embedding rows from every part, zeros for rows out of range', async () => {
    const E = up(wb.bits, [N, K], 'bfloat16');
    const ids = [0, 31, 32, 99, 64, -1, 100, 5];
    const got = await down(be.gather(E, up(Int32Array.from(ids), [ids.length], 'int32')), [ids.length, K]);
    const want = ids.flatMap((r) => (r >= 0 && r < N ? Array.from(wb.rounded.subarray(r * K, r * K + K)) : new Array(K).fill(0)));
    expect(Array.from(got)).toEqual(want);
  });

  it.each([false, true])('the DoRA weight norm over split W (transposeW=%s)', async (transposeW) => {
    const r = 4;
    const [out, inn] = transposeW ? [K, N] : [N, K];
    const a = randn(r * inn, 7, 0.3);
    const b = randn(out * r, 8, 0.3);
    const W = up(wb.bits, [N, K], 'bfloat16');
    const n = be.weightNorm(W, up(a, [r, inn]), up(b, [out, r]), 1.5, { transposeW });
    const ref = weightNormHost(wb.rounded, a, b, out, inn, r, 1.5, transposeW);
    expect(relativeError(await down(n, [out]), ref)).toBeLessThan(1e-5);
  });

  it('elementwise on split weights: W + delta, W·row, cast, unary, affine; results split or joined', async () => {
    const W = up(wb.bits, [N, K], 'bfloat16');
    const delta = randn(N * K, 9);
    const D = up(delta, [N, K]);
    const sum = be.binary('add', W, D, [N, K]);
    expect(be.buffersOf(sum)).toBe(4);
    expect(
      relativeError(
        await down(sum, [N, K]),
        Float64Array.from(delta, (d, i) => d + wb.rounded[i]!),
      ),
    ).toBeLessThan(1e-6);
    const row = randn(K, 10);
    const scaled = be.binary('mul', up(row, [K]), W, [N, K]);
    expect(
      relativeError(
        await down(scaled, [N, K]),
        Float64Array.from(wb.rounded, (v, i) => v * row[i % K]!),
      ),
    ).toBeLessThan(1e-6);
    const wide = be.cast(W, 'float32');
    expect(Array.from(await down(wide, [N, K]))).toEqual(Array.from(wb.rounded));
    const sq = be.unary('square', W);
    expect(
      relativeError(
        await down(sq, [N, K]),
        Float64Array.from(wb.rounded, (v) => v * v),
      ),
    ).toBeLessThan(1e-6);
    const af = be.affine(W, 2, 1);
    expect(
      relativeError(
        await down(af, [N, K]),
        Float64Array.from(wb.rounded, (v) => 2 * v + 1),
      ),
    ).toBeLessThan(1e-6);
    const positive = info(be.binary('greater', W, up(new Float32Array([0]), [1]), [N, K]), [N, K]);
    const cond = be.where(positive, W, D, [N, K]);
    expect(Array.from(await down(cond, [N, K]))).toEqual(Array.from(wb.rounded, (v, i) => (v > 0 ? v : delta[i]!)));
    const filled = be.fill([N, K], 2.5, 'float32');
    expect(be.buffersOf(filled)).toBe(4);
    expect(Array.from(await down(filled, [N, K]))).toEqual(new Array(N * K).fill(2.5));
  });

  it('slices rows across parts and transposes keeping the split axis', async () => {
    const W = up(w, [N, K]);
    const s = be.slice(W, [30, 2], [40, 5]);
    const want = [];
    for (let i = 30; i < 70; i++) for (let j = 2; j < 7; j++) want.push(w[i * K + j]!);
    expect(Array.from(await down(s, [40, 5]))).toEqual(want);
    const W3 = up(w, [N, 4, 6]);
    const t = be.transpose(W3, [0, 2, 1]);
    const got = await down(t, [N, 6, 4]);
    expect(got[(7 * 6 + 5) * 4 + 3]).toBe(w[(7 * 4 + 3) * 6 + 5]);
    expect(got[(99 * 6 + 2) * 4 + 1]).toBe(w[(99 * 4 + 1) * 6 + 2]);
  });

  /** A packed W uploaded as core uploads it (4-bit data [rows, cols/2], int8 [rows, cols]), and its float values. */
  function packed(format: 'nf4' | 'int8', rows: number, cols: number, seed: number): { q: QuantizedInfo<GpuTensor>; values: Float32Array } {
    const host = quantizeHost(randn(rows * cols, seed), [rows, cols], { format, name: 'w' });
    const values = dequantizeHost(host);
    if (host.format === 'int8') {
      const data = up(host.data, [rows, cols], 'int8');
      return { q: { format: 'int8', shape: [rows, cols], data, scales: up(host.scb, [rows]), blocksize: cols }, values };
    }
    const data = up(host.data as unknown as Int8Array, [rows, cols / 2], 'uint8');
    const scales = up(host.absmax as Float32Array, [host.absmax.length]);
    return { q: { format, shape: [rows, cols], data, scales, blocksize: host.blocksize }, values };
  }

  // Parts are whole rows (planned at 4 bytes per element): nf4 [256, 64] 8 parts of 32 rows; [128, 1024] 64 parts
  // of 2 rows, its absmax split too; int8 [200, 24] 7 parts of 32 rows (the last 8).
  it.each([
    ['nf4', 256, 64],
    ['nf4', 128, 1024],
    ['int8', 200, 24],
  ] as const)('packed %s W [%i, %i] split by rows: x·Wᵀ, dY·W, gather, norms, dequantize', async (format, rows, cols) => {
    const { q, values } = packed(format, rows, cols, 21);
    expect(be.buffersOf(q.data.data)).toBeGreaterThan(1);
    if (cols === 1024) expect(be.buffersOf(q.scales.data)).toBeGreaterThan(1);
    for (const T of 12 * cols <= 4096 ? [1, 3] : [1]) {
      const x = randn(T * cols, 22);
      const y = be.matmulNarrow(up(x, [T, cols]), q, true, [T, rows]);
      expect(relativeError(await down(y, [T, rows]), matmulRef(x, [T, cols], values, [rows, cols], false, true).out)).toBeLessThan(1e-5);
    }
    const dy = randn(2 * rows, 23);
    const g = be.matmulNarrow(up(dy, [2, rows]), q, false, [2, cols]);
    expect(relativeError(await down(g, [2, cols]), matmulRef(dy, [2, rows], values, [rows, cols], false, false).out)).toBeLessThan(1e-5);
    const ids = [0, rows - 1, 31, 32, -1, rows, 5];
    const got = await down(be.gatherNarrow(q, up(Int32Array.from(ids), [ids.length], 'int32')), [ids.length, cols]);
    const want = ids.flatMap((r) => (r >= 0 && r < rows ? Array.from(values.subarray(r * cols, (r + 1) * cols)) : new Array(cols).fill(0)));
    expect(Array.from(got)).toEqual(want);
    expect(Array.from(await down(be.dequantize(q), [rows, cols]))).toEqual(Array.from(values));
    for (const transposeW of [false, true]) {
      const r = cols > 512 ? 1 : 4; // A [r, in] must fit one buffer
      const [out, inn] = transposeW ? [cols, rows] : [rows, cols];
      const a = randn(r * inn, 24, 0.3);
      const b = randn(out * r, 25, 0.3);
      const n = be.weightNormNarrow(q, up(a, [r, inn]), up(b, [out, r]), 1.5, { transposeW });
      const norms = await down(n, [out]);
      expect(relativeError(norms, weightNormHost(values, a, b, out, inn, r, 1.5, transposeW)), `transposeW ${transposeW}`).toBeLessThan(
        1e-5,
      );
    }
  });

  it('refuses split tensors in kernels that do not take them, naming the op, shape and buffers', () => {
    const W = up(w, [N, K]);
    expect(() => be.reduce('sum', W, [1], [N, 1])).toThrow(SplitTensorError);
    expect(() => be.reduce('sum', W, [1], [N, 1])).toThrow(/webgpu reduce: tensor \[100, 24\] float32 \(9600 bytes over 4 buffers\)/);
    expect(() => be.transpose(W, [1, 0])).toThrow(SplitTensorError);
  });

  it('releases every part', async () => {
    for (const t of made.splice(0)) be.release(t.data);
    await be.sync();
    const before = be.liveBuffers();
    const W = be.upload(w, [N, K], 'float32');
    expect(be.liveBuffers()).toBe(before + 4);
    be.release(W);
    expect(be.liveBuffers()).toBe(before);
  });
});
