/**
 * Every program variant forced on its own, at odd sizes and edges, against float64 references: the tiled
 * blockings (128×128 included), split-K, the row-streaming GEMV and weight norm (rows per workgroup, ranks
 * across the register-chunk boundary, bf16 W), the fused DoRA kernels core asks for (`matmulCompose`,
 * `matmulWeightNorm`: results equal with fusion off, fewer dispatches with it on), and the uniform slots
 * (reused for identical parameters, recycled when full).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bf16ToF32, f32ToBf16, type DType, type TensorInfo } from '@dorajs/core';
import type { GpuTensor } from '../src/index.js';
import { setupGpu } from './helpers/gpu.js';
import { matmulRef, randn, size } from './helpers/reference.js';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';

const { backend, skipReason } = await setupGpu();
const be = backend!;
afterAll(() => backend?.dispose());
afterEach(() => {
  if (!backend) return;
  be.setMatmulVariant('auto');
  be.setWeightNormVariant('auto');
  be.setTuning({});
  be.setFusion(true);
});

type Info = TensorInfo<GpuTensor>;
function up(values: Float32Array | Uint16Array, shape: readonly number[], dtype: DType = 'float32'): Info {
  return { data: be.upload(values, shape, dtype), shape, dtype };
}
function info(data: GpuTensor, shape: readonly number[]): Info {
  return { data, shape, dtype: data.dtype };
}
async function down(data: GpuTensor, shape: readonly number[] = [data.size]): Promise<Float32Array> {
  return (await be.download(info(data, shape))) as Float32Array;
}

describe.skipIf(!backend)(`webgpu program variants${skipReason ? ` (${skipReason})` : ''}`, () => {
  describe('tiled matmul', () => {
    it.each([
      // [tile, aShape, bShape, transA, transB]: interior and edge tiles, K tails, every transposition
      ['8x8x8', [130, 40], [40, 136], false, false],
      ['8x8x8', [40, 130], [136, 40], true, true],
      ['8x8x8', [128, 64], [128, 64], false, true],
      ['4x8x8', [70, 36], [36, 140], false, false],
      ['8x4x8', [36, 70], [36, 68], true, false],
      ['4x4x16', [65, 44], [72, 44], false, true],
      ['8x8x16', [129, 48], [48, 128], false, false],
      ['4x4x16', [17, 33], [33, 9], false, false], // scalar loads (odd contiguous dimensions)
      ['8x8x8', [3, 131, 37], [37, 130], false, false], // batch, scalar, edges only
      ['4x4x16', [2, 64, 40], [2, 64, 40], false, true], // batch, vec4
    ] as const)('%s blocking: %j · %j (transA %s, transB %s)', async (tile, aShape, bShape, transA, transB) => {
      be.setMatmulVariant('tiled');
      be.setTuning({ tile });
      const a = randn(size(aShape), 1);
      const b = randn(size(bShape), 2);
      const ref = matmulRef(a, aShape, b, bShape, transA, transB);
      const y = be.matmul(up(a, aShape), up(b, bShape), { transposeA: transA, transposeB: transB }, ref.shape);
      expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
    });

    it.each([
      // [splits, aShape, bShape, transB]
      [3, [20, 100], [100, 24], false],
      [4, [9, 200], [31, 200], true], // scalar program
      [5, [2, 16, 96], [96, 32], false], // batch
      [2, [64, 64], [64, 64], true], // K split into whole tiles
    ] as const)('split-K into %i slices: %j · %j (transB %s)', async (splitK, aShape, bShape, transB) => {
      be.setMatmulVariant('tiled');
      be.setTuning({ splitK });
      const a = randn(size(aShape), 3);
      const b = randn(size(bShape), 4);
      const ref = matmulRef(a, aShape, b, bShape, false, transB);
      const before = be.stats().dispatches;
      const y = be.matmul(up(a, aShape), up(b, bShape), { transposeB: transB }, ref.shape);
      be.flush();
      expect(be.stats().dispatches - before).toBe(2); // the slices, then their sum
      expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
    });

    it('reuses one scratch buffer for the K slices of consecutive matmuls in a batch, without mixing them up', async () => {
      be.setTuning({ splitK: 4 });
      const [M, K, N] = [12, 128, 20];
      const inputs = [0, 1, 2].map((i) => [randn(M * K, 50 + i), randn(K * N, 60 + i)] as const);
      const refs = inputs.map(([a, b]) => matmulRef(a, [M, K], b, [K, N], false, false).out);
      const uploaded = inputs.map(([a, b]) => [up(a, [M, K]), up(b, [K, N])] as const);
      await be.sync();
      be.matmul(uploaded[0]![0], uploaded[0]![1], {}, [M, N]); // warm: creates the scratch buffer
      be.flush();
      be.resetLargestRequest();
      const ys = uploaded.map(([a, b]) => be.matmul(a, b, {}, [M, N]));
      be.flush();
      expect(be.stats().largestRequest).toBe(M * N * 4); // the outputs only: the scratch was not requested again
      for (let i = 0; i < 3; i++) expect(relativeError(await down(ys[i]!), refs[i]!)).toBeLessThan(1e-5);
    });

    it('splits K by itself when the output has few tiles and K is long', async () => {
      const [M, K, N] = [16, 2048, 64];
      const a = randn(M * K, 5, 0.1);
      const b = randn(K * N, 6, 0.1);
      const ref = matmulRef(a, [M, K], b, [N, K], false, true);
      const before = be.stats().dispatches;
      const y = be.matmul(up(a, [M, K]), up(b, [N, K]), { transposeB: true }, [M, N]);
      be.flush();
      expect(be.stats().dispatches - before).toBe(2);
      expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
    });

    it('falls back to a blocking that fits the workgroup memory limit', async () => {
      // 8x8x32 double-buffered needs 66 KiB of workgroup memory: more than llvmpipe (32 KiB) offers.
      be.setMatmulVariant('tiled');
      be.setTuning({ tile: '8x8x32' });
      const a = randn(130 * 70, 7);
      const b = randn(70 * 129, 8);
      const ref = matmulRef(a, [130, 70], b, [70, 129], false, false);
      const y = be.matmul(up(a, [130, 70]), up(b, [70, 129]), {}, ref.shape);
      expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
      await be.sync();
    });
  });

  describe('row-streaming GEMV x·Wᵀ', () => {
    it.each([
      // [rows per workgroup, N, K, W dtype, batch]
      [1, 7, 36, 'float32', 1],
      [2, 33, 1028, 'float32', 1],
      [4, 65, 2052, 'float32', 1],
      [16, 40, 1028, 'float32', 1],
      [8, 17, 64, 'float32', 3],
      [4, 30, 1032, 'bfloat16', 1],
      [8, 9, 40, 'bfloat16', 2],
    ] as const)('%i rows per workgroup, W %i×%i %s, batch %i', async (rows, N, K, dtype, batch) => {
      be.setMatmulVariant('gemv');
      be.setTuning({ rows });
      const x = randn(batch * K, 9);
      const wf = randn(N * K, 10);
      const bits = Uint16Array.from(wf, (v) => f32ToBf16(v));
      const wv = dtype === 'float32' ? wf : Float32Array.from(bits, bf16ToF32);
      const xShape = batch > 1 ? [batch, 1, K] : [1, K];
      const ref = matmulRef(x, xShape, wv, [N, K], false, true);
      const W = dtype === 'float32' ? up(wf, [N, K]) : up(bits, [N, K], 'bfloat16');
      const y = be.matmul(up(x, xShape), W, { transposeB: true }, ref.shape);
      expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
    });

    it('keeps the older GEMV for shapes the rows program does not take (K % 4 != 0, x·W)', async () => {
      for (const [K, transB] of [
        [37, true],
        [64, false],
      ] as const) {
        const x = randn(K, 11);
        const w = randn(K * 10, 12);
        const wShape = transB ? [10, K] : [K, 10];
        const ref = matmulRef(x, [1, K], w, wShape, false, transB);
        const y = be.matmul(up(x, [1, K]), up(w, wShape), { transposeB: transB }, [1, 10]);
        expect(relativeError(await down(y), ref.out)).toBeLessThan(1e-5);
      }
    });
  });

  describe('row-streaming weight norm', () => {
    it.each([
      // [rows per workgroup, out, in, r, W dtype]: ranks below, at and across the 16-row register chunk
      [4, 37, 44, 1, 'float32'],
      [4, 64, 1028, 16, 'float32'],
      [16, 70, 2052, 16, 'float32'],
      [16, 20, 40, 20, 'bfloat16'],
      [2, 21, 68, 17, 'float32'],
      [8, 19, 36, 33, 'float32'],
      [1, 5, 24, 128, 'float32'],
      [4, 40, 2056, 16, 'bfloat16'],
      [8, 13, 12, 5, 'bfloat16'],
    ] as const)('%i rows per workgroup, W %i×%i, r = %i, %s', async (rows, out, inn, r, dtype) => {
      be.setWeightNormVariant('rows');
      be.setTuning({ rows });
      const wf = randn(out * inn, 13);
      const bits = Uint16Array.from(wf, (v) => f32ToBf16(v));
      const wv = dtype === 'float32' ? wf : Float32Array.from(bits, bf16ToF32);
      const a = randn(r * inn, 14, 0.3);
      const b = randn(out * r, 15, 0.3);
      const W = dtype === 'float32' ? up(wf, [out, inn]) : up(bits, [out, inn], 'bfloat16');
      const [A, B] = [up(a, [r, inn]), up(b, [out, r])];
      be.resetLargestRequest();
      const n = be.weightNorm(W, A, B, 1.3, {});
      expect(be.stats().largestRequest).toBe(out * 4); // the norms, nothing else
      expect(relativeError(await down(n), weightNormHost(wv, a, b, out, inn, r, 1.3, false))).toBeLessThan(1e-5);
    });

    it('by default runs the one-pass rows program, and matmulWeightNorm shares it with the GEMV over W', async () => {
      const [out, inn, r] = [36, 64, 4];
      const w = randn(out * inn, 40);
      const a = randn(r * inn, 41, 0.5);
      const b = randn(out * r, 42, 0.5);
      const x = randn(inn, 43);
      const [W, A, B, X] = [up(w, [out, inn]), up(a, [r, inn]), up(b, [out, r]), up(x, [1, inn])];
      const ref = weightNormHost(w, a, b, out, inn, r, 2, false);
      await be.sync();
      let before = be.stats();
      const alone = be.weightNorm(W, A, B, 2, {});
      expect(be.stats().dispatches - before.dispatches).toBe(1);
      before = be.stats();
      const shared = be.matmulWeightNorm(X, W, A, B, 2, {})!;
      const [y, joined] = [shared.base, shared.norm];
      expect(be.stats().fused - before.fused).toBe(1);
      expect(be.stats().dispatches - before.dispatches).toBe(1);
      expect(relativeError(await down(alone), ref)).toBeLessThan(1e-5);
      expect(relativeError(await down(joined), ref)).toBeLessThan(1e-5);
      expect(relativeError(await down(y), matmulRef(x, [1, inn], w, [out, inn], false, true).out)).toBeLessThan(1e-5);
      // Several rows, W stored [in, out], or fusion off: nothing to share (core runs them apart).
      expect(be.matmulWeightNorm(up(randn(2 * inn, 44), [2, inn]), W, A, B, 2, {})).toBeNull();
      expect(be.matmulWeightNorm(X, up(w, [inn, out]), A, B, 2, { transposeW: true })).toBeNull();
      be.setFusion(false);
      expect(be.matmulWeightNorm(X, W, A, B, 2, {})).toBeNull();
    });

    it('takes one dispatch, and the tiles program where rows does not apply', async () => {
      const [out, inn, r] = [24, 40, 4];
      const w = randn(out * inn, 16);
      const a = randn(r * inn, 17, 0.5);
      const b = randn(out * r, 18, 0.5);
      const W = up(w, [out, inn]);
      const A = up(a, [r, inn]);
      const B = up(b, [out, r]);
      const ref = weightNormHost(w, a, b, out, inn, r, 2, false);
      for (const [variant, dispatches] of [
        ['rows', 1],
        ['tiles', 2],
      ] as const) {
        be.setWeightNormVariant(variant);
        const before = be.stats().dispatches;
        const n = be.weightNorm(W, A, B, 2, {});
        expect(be.stats().dispatches - before, variant).toBe(dispatches);
        expect(relativeError(await down(n), ref), variant).toBeLessThan(1e-5);
      }
    });
  });

  describe('fused DoRA kernels (matmulCompose, matmulWeightNorm)', () => {
    // A DoRA Linear forward as core's doraLinear asks for it: the LoRA branch, then (uncached) the base GEMV
    // and the norm in one pass where the backend shares it, else the norm and the base matmul with the compose.
    async function doraForward(T: number, out: number, inn: number, r: number, opts: { bias: boolean; cached: boolean; bf16W?: boolean }) {
      const s = 0.8;
      const xs = [T, inn];
      const wf = randn(out * inn, 20);
      const bits = Uint16Array.from(wf, (v) => f32ToBf16(v));
      const x = up(randn(T * inn, 21), xs);
      const W = opts.bf16W ? up(bits, [out, inn], 'bfloat16') : up(wf, [out, inn]);
      const A = up(randn(r * inn, 22, 0.2), [r, inn]);
      const B = up(randn(out * r, 23, 0.2), [out, r]);
      const m = up(randn(out, 24, 2), [out]);
      const bias = opts.bias ? up(randn(out, 25), [out]) : null;
      const gOf = (norm: GpuTensor) => info(be.binary('div', m, info(norm, [out]), [out]), [out]);
      const cachedG = opts.cached ? gOf(be.weightNorm(W, A, B, s, {})) : null;
      await be.sync();
      const before = be.stats();
      const ax = info(be.matmul(x, A, { transposeB: true }, [T, r]), [T, r]);
      const lora = info(be.matmul(ax, B, { transposeB: true }, [T, out]), [T, out]);
      const shared = cachedG ? null : be.matmulWeightNorm(x, W, A, B, s, {});
      let y: GpuTensor;
      let base: GpuTensor;
      if (shared) {
        base = shared.base;
        y = be.doraCompose(info(base, [T, out]), lora, gOf(shared.norm), s, bias);
      } else {
        const fused = be.matmulCompose(x, W, lora, cachedG ?? gOf(be.weightNorm(W, A, B, s, {})), s, bias, {});
        [base, y] = [fused.base, fused.y];
      }
      be.flush();
      const after = be.stats();
      return {
        y: await down(y),
        base: await down(base),
        dispatches: after.dispatches - before.dispatches,
        fused: after.fused - before.fused,
      };
    }

    it.each([
      // [T, out, in, r, bias, cached, bf16 W]: T = 1 goes through the rows GEMV, larger T through tiled
      [1, 40, 64, 4, true, true, false],
      [1, 40, 64, 4, false, false, false],
      [1, 33, 1028, 16, true, false, true],
      [5, 36, 44, 4, true, true, false],
      [130, 132, 40, 8, false, true, false],
      [3, 30, 37, 2, true, true, false], // scalar tiled program
    ] as const)('T=%i W %i×%i r=%i (bias %s, cached %s, bf16 W %s): fused equals unfused', async (T, out, inn, r, bias, cached, bf16W) => {
      // The rows norm is what joins a GEMV; force it (small `out` would otherwise pick tiles) in both runs.
      if (T === 1 && !cached) be.setWeightNormVariant('rows');
      be.setFusion(false);
      const plain = await doraForward(T, out, inn, r, { bias, cached, bf16W });
      be.setFusion(true);
      const fused = await doraForward(T, out, inn, r, { bias, cached, bf16W });
      expect(plain.fused).toBe(0);
      expect(fused.fused).toBe(1);
      expect(fused.dispatches).toBe(plain.dispatches - 1);
      expect(relativeError(fused.y, plain.y)).toBeLessThan(1e-6);
      expect(relativeError(fused.base, plain.base)).toBeLessThan(1e-6);
    });

    it('folds the compose into a split-K matmul (in its reduction)', async () => {
      be.setTuning({ splitK: 3 });
      const [T, out, inn] = [8, 20, 96];
      const base = randn(T * inn, 26);
      const w = randn(out * inn, 27);
      const lora = randn(T * out, 28);
      const g = randn(out, 29);
      const bias = randn(out, 30);
      const ref = matmulRef(base, [T, inn], w, [out, inn], false, true).out;
      const want = Array.from(ref, (v, i) => bias[i % out]! + g[i % out]! * (v + 0.5 * lora[i]!));
      const before = be.stats();
      const { base: b, y } = be.matmulCompose(
        up(base, [T, inn]),
        up(w, [out, inn]),
        up(lora, [T, out]),
        up(g, [out]),
        0.5,
        up(bias, [out]),
        {},
      );
      be.flush();
      expect(be.stats().fused - before.fused).toBe(1);
      expect(be.stats().dispatches - before.dispatches).toBe(2);
      expect(relativeError(await down(y), want)).toBeLessThan(1e-5);
      expect(relativeError(await down(b), ref)).toBeLessThan(1e-5);
    });

    it('a matmul is read right after it is recorded, and released inputs are not reused before it ran', async () => {
      const [M, K, N] = [6, 40, 12];
      const a = randn(M * K, 31);
      const b = randn(K * N, 32);
      const ref = matmulRef(a, [M, K], b, [K, N], false, false).out;
      const A = up(a, [M, K]);
      const B = up(b, [K, N]);
      const y = be.matmul(A, B, {}, [M, N]);
      const doubled = be.affine(info(y, [M, N]), 2, 0);
      const y2 = be.matmul(A, B, {}, [M, N]);
      be.release(A.data);
      be.release(B.data);
      be.flush();
      const junk = [be.upload(randn(M * K, 33), [M, K], 'float32'), be.upload(randn(K * N, 34), [K, N], 'float32')];
      expect(
        relativeError(
          await down(doubled),
          Array.from(ref, (v) => 2 * v),
        ),
      ).toBeLessThan(1e-5);
      expect(relativeError(await down(y2), ref)).toBeLessThan(1e-5);
      for (const t of [y, y2, doubled, ...junk]) be.release(t);
    });
  });

  describe('uniform slots', () => {
    it('reuses one slot for identical parameters and recycles all slots when they run out', async () => {
      const { createWebGpuBackend } = await import('../src/index.js');
      const small = await createWebGpuBackend({ device: be.device, uniformArenaBytes: 1024 });
      const x = small.upload(Float32Array.from([1, 2, 3]), [3], 'float32');
      const xi = { data: x, shape: [3], dtype: 'float32' } as const;
      const slots0 = small.stats().uniformSlots;
      for (let i = 0; i < 20; i++) small.release(small.affine(xi, 2, 1));
      expect(small.stats().uniformSlots - slots0).toBe(1);
      // The same buffers and parameters find their bind group again (after a submit the output buffer is reused).
      await small.sync();
      const groups0 = small.stats().bindGroupsCreated;
      for (let i = 0; i < 5; i++) {
        small.release(small.affine(xi, 3, 1));
        await small.sync();
      }
      expect(small.stats().bindGroupsCreated - groups0).toBe(1);
      // 4 arenas of 1 KiB hold 4·1024/16 slots at most; 600 distinct parameter blocks wrap around several times.
      const outs: GpuTensor[] = [];
      for (let i = 0; i < 600; i++) outs.push(small.affine(xi, i, 0.5));
      const got = await Promise.all([0, 1, 299, 599].map((i) => small.download({ data: outs[i]!, shape: [3], dtype: 'float32' })));
      expect(got.map((g) => Array.from(g as Float32Array))).toEqual([0, 1, 299, 599].map((i) => [i + 0.5, 2 * i + 0.5, 3 * i + 0.5]));
      small.dispose();
    });
  });
});
