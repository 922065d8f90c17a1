/**
 * A compatibility-mode device with its default limits (128 invocations and 16 KiB of workgroup memory per
 * workgroup, where the tiled matmul, the `tiles` weight norm and the row-streaming programs use 256 on
 * other devices): every program runs on what the device allows — the tiled matmul and the `tiles` norm on
 * 16×8 threads, the row-streaming GEMV and norm on 128 — and gives the same results, with the same number
 * of dispatches, as on a device from the same adapter with its real limits (`full`). W is never widened
 * into a float32 buffer (no cast or dequantize program runs for a norm).
 * Dawn's OpenGL ES backend on llvmpipe gives such a device; without it the file is skipped (or fails in CI).
 */
import { dequantizeHost, f16ToF32, f32ToBf16, bf16ToF32, f32ToF16, quantizeHost, type QuantizedInfo, type TensorInfo } from '@dorajs/core';
import { relativeError, weightNormHost } from '@dorajs/backend-conformance';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from '../src/index.js';
import type { KernelContext } from '../src/context.js';
import { chooseTile, threadRows } from '../src/kernels/matmul/tuning.js';
import { rowsWorkgroup } from '../src/kernels/rows.js';
import { matmulRef, randn, size } from './helpers/reference.js';

/** Dawn's instance must outlive its devices (collected early, it takes the GL context with it). */
let dawn: GPU | null = null;

interface Backends {
  /** The device with compatibility mode's default limits. */
  readonly be: WebGpuBackend;
  /** A device from the same adapter with the adapter's limits (1024 invocations on llvmpipe). */
  readonly full: WebGpuBackend;
}

async function compatBackends(): Promise<{ backends: Backends | null; reason: string }> {
  try {
    const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU };
    dawn = create(['backend=opengles']);
    // An adapter gives one device: one adapter each.
    const adapter = () =>
      dawn!.requestAdapter({ featureLevel: 'compatibility' }).then((a) => a ?? Promise.reject(new Error('no compatibility adapter')));
    const device = await (await adapter()).requestDevice(); // default limits
    const fullAdapter = await adapter();
    const requiredLimits: Record<string, number> = {};
    for (const key in fullAdapter.limits) requiredLimits[key] = (fullAdapter.limits as unknown as Record<string, number>)[key]!;
    const fullDevice = await fullAdapter.requestDevice({ requiredLimits });
    return {
      backends: {
        be: await createWebGpuBackend({ device, destroyDevice: true }),
        full: await createWebGpuBackend({ device: fullDevice, destroyDevice: true }),
      },
      reason: '',
    };
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    return { backends: null, reason: `no compatibility-mode WebGPU device, skipping: ${(e as Error).message}` };
  }
}

const { backends, reason } = await compatBackends();
const { be, full } = backends ?? ({} as Backends);
afterAll(() => {
  backends?.be.dispose();
  backends?.full.dispose();
});
afterEach(() => {
  for (const b of backends ? [be, full] : []) {
    b.setMatmulVariant('auto');
    b.setWeightNormVariant('auto');
    b.setTuning({});
  }
});

type Info = TensorInfo<GpuTensor>;
type Dense = 'float32' | 'bfloat16' | 'float16';
const up = (
  on: WebGpuBackend,
  values: Float32Array | Int8Array | Uint8Array | Uint16Array,
  shape: number[],
  dtype: Dense | 'int8' | 'uint8' = 'float32',
): Info => ({ data: on.upload(values as Float32Array, shape, dtype), shape, dtype });
const down = async (on: WebGpuBackend, data: GpuTensor, shape: readonly number[]) =>
  (await on.download({ data, shape, dtype: 'float32' })) as Float32Array;

/** `values` stored as `dtype` (bits) and the float32 values the GPU sees. */
function narrowed(values: Float32Array, dtype: Dense): { bits: Float32Array | Uint16Array; seen: Float32Array } {
  if (dtype === 'float32') return { bits: values, seen: values };
  const [to, from] = dtype === 'bfloat16' ? [f32ToBf16, bf16ToF32] : [f32ToF16, f16ToF32];
  const bits = Uint16Array.from(values, to);
  return { bits, seen: Float32Array.from(bits, from) };
}

/**
 * Runs `op` on the compat device and on `full`; returns both results, the programs the compat device
 * compiled for it, and both dispatch counts.
 */
async function onBoth(op: (on: WebGpuBackend) => { y: GpuTensor; shape: readonly number[] }) {
  const run = async (on: WebGpuBackend) => {
    const keys = new Set(on.programKeys());
    const before = on.stats().dispatches;
    const { y, shape } = op(on);
    on.flush();
    const dispatches = on.stats().dispatches - before;
    return { out: await down(on, y, shape), dispatches, programs: on.programKeys().filter((k) => !keys.has(k)) };
  };
  return { compat: await run(be), full: await run(full) };
}

describe.skipIf(!backends)(`webgpu on a compatibility-mode device with default limits${reason ? ` (${reason})` : ''}`, () => {
  it('has fewer than 256 invocations per workgroup: 8 rows of 16 threads', () => {
    expect(be.device.limits.maxComputeInvocationsPerWorkgroup).toBe(128);
    expect(be.device.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    expect(threadRows(be.device.limits)).toBe(8);
    expect(full.device.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(threadRows(full.device.limits)).toBe(16);
  });

  it('picks a tile that fits the workgroup memory and threads of any device', () => {
    const ctx = (invocations: number, storage: number, tile?: string) =>
      ({
        rt: { limits: { maxComputeInvocationsPerWorkgroup: invocations, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256 } },
        options: { tuning: { tile } },
        maxWorkgroupStorage: storage,
      }) as unknown as KernelContext;
    // 128×128 tiles where 256 invocations and 32 KiB allow them.
    expect(chooseTile(ctx(256, 32768), 1024, 1024, false, false)).toEqual({ TM: 8, TN: 8, BK: 8, TY: 16 });
    // A core device with default limits (256 invocations, 16 KiB): neither 256-thread tile fits; 64×128 does.
    expect(chooseTile(ctx(256, 16384), 1024, 1024, false, true)).toEqual({ TM: 8, TN: 8, BK: 8, TY: 8 });
    expect(chooseTile(ctx(128, 16384), 1024, 1024, true, true)).toEqual({ TM: 8, TN: 8, BK: 8, TY: 8 });
    expect(chooseTile(ctx(128, 16384), 100, 100, false, false)).toEqual({ TM: 4, TN: 4, BK: 16, TY: 8 });
    // A forced blocking that 8 rows of threads cannot load evenly (4×8: half a vec4 of A each) falls back.
    expect(chooseTile(ctx(128, 16384, '4x8x8'), 100, 100, false, false)).toEqual({ TM: 4, TN: 4, BK: 16, TY: 8 });
    expect(chooseTile(ctx(128, 16384, '8x4x8'), 100, 100, false, false)).toEqual({ TM: 8, TN: 4, BK: 8, TY: 8 });
    expect(chooseTile(ctx(128, 1024), 100, 100, false, false)).toBeNull();
  });

  it('sizes the row-streaming programs to the invocations and workgroup memory of any device', () => {
    const limits = (invocations: number, storage: number) =>
      ({
        maxComputeInvocationsPerWorkgroup: invocations,
        maxComputeWorkgroupSizeX: 1024,
        maxComputeWorkgroupStorageSize: storage,
      }) as GPUSupportedLimits;
    const norm16 = { rows: 16, gemv: true, norm: true, subgroups: false };
    expect(rowsWorkgroup(limits(1024, 32768), norm16)).toBe(256);
    // B's 16 rows (8 KiB) and a 256-thread reduction (8 KiB) overflow the core default of 16 KiB: 128 threads.
    expect(rowsWorkgroup(limits(256, 16384), norm16)).toBe(128);
    expect(rowsWorkgroup(limits(256, 16384), { ...norm16, norm: false })).toBe(256);
    expect(rowsWorkgroup(limits(128, 16384), { ...norm16, rows: 4, norm: false })).toBe(128);
    expect(rowsWorkgroup(limits(256, 8192), norm16)).toBe(0);
    // Subgroups may be 128 wide: no fewer threads than that with subgroup reductions.
    expect(rowsWorkgroup(limits(64, 32768), { ...norm16, norm: false })).toBe(64);
    expect(rowsWorkgroup(limits(64, 32768), { ...norm16, norm: false, subgroups: true })).toBe(0);
  });

  it.each([
    // [tile (tuning), splitK, aShape, bShape, transA, transB, program]
    [undefined, undefined, [130, 40], [40, 136], false, false, 'matmul-tiled:4x4x16/8:'],
    [undefined, undefined, [40, 130], [136, 40], true, true, 'matmul-tiled:4x4x16/8:'],
    [undefined, undefined, [520, 64], [520, 64], false, true, 'matmul-tiled:8x8x8/8:'],
    ['8x8x16', undefined, [129, 48], [48, 128], false, false, 'matmul-tiled:8x8x8/8:'], // BK 16 needs 25 KiB: shrunk to BK 8
    ['8x4x8', undefined, [36, 70], [36, 68], true, false, 'matmul-tiled:8x4x8/8:'],
    [undefined, undefined, [17, 33], [33, 9], false, false, 'matmul-tiled:4x4x16/8:float32:float32:NN:scalar'],
    [undefined, undefined, [2, 64, 40], [2, 64, 40], false, true, 'matmul-tiled:4x4x16/8:'],
    [undefined, 3, [20, 100], [100, 24], false, false, 'matmul-tiled:4x4x16/8:float32:float32:NN:vec4:split'],
    [undefined, 4, [9, 200], [31, 200], false, true, 'matmul-tiled:4x4x16/8:float32:float32:NT:scalar:split'],
  ] as const)(
    'tiled matmul on 16×8 threads (tile %s, split-K %s): %j · %j (transA %s, transB %s)',
    async (tile, splitK, aShape, bShape, transA, transB, program) => {
      const a = randn(size(aShape), 1);
      const b = randn(size(bShape), 2);
      const ref = matmulRef(a, aShape, b, bShape, transA, transB);
      const r = await onBoth((on) => {
        on.setTuning({ ...(tile ? { tile } : {}), ...(splitK ? { splitK } : {}) });
        const y = on.matmul(up(on, a, [...aShape]), up(on, b, [...bShape]), { transposeA: transA, transposeB: transB }, ref.shape);
        return { y, shape: ref.shape };
      });
      expect(r.compat.programs.some((k) => k.startsWith(program))).toBe(true);
      expect(r.compat.programs.filter((k) => k.startsWith('matmul-smallk'))).toEqual([]);
      expect(relativeError(r.compat.out, ref.out)).toBeLessThan(1e-4);
      expect(relativeError(r.full.out, ref.out)).toBeLessThan(1e-4);
      expect(r.compat.dispatches).toBe(r.full.dispatches);
      expect(r.compat.dispatches).toBe(splitK ? 2 : 1);
    },
  );

  it('matmulCompose folds into the tiled program on 16×8 threads (one dispatch)', async () => {
    const [T, inn, out] = [40, 64, 48];
    const [x, w, lora, g, bias] = [randn(T * inn, 11), randn(out * inn, 12), randn(T * out, 13), randn(out, 14), randn(out, 15)];
    const ref = matmulRef(x, [T, inn], w, [out, inn], false, true).out;
    const yRef = Array.from(ref, (v, i) => bias[i % out]! + g[i % out]! * (v + 0.5 * lora[i]!));
    const r = await onBoth((on) => {
      const res = on.matmulCompose(
        up(on, x, [T, inn]),
        up(on, w, [out, inn]),
        up(on, lora, [T, out]),
        up(on, g, [out]),
        0.5,
        up(on, bias, [out]),
        {},
      );
      return { y: res.y, shape: [T, out] };
    });
    expect(r.compat.programs.some((k) => k.startsWith('matmul-tiled:4x4x16/8:') && k.endsWith(':composeBias'))).toBe(true);
    expect(relativeError(r.compat.out, yRef)).toBeLessThan(1e-4);
    expect(r.compat.dispatches).toBe(1);
    expect(r.full.dispatches).toBe(1);
  });

  it.each([
    // [W dtype, out, in, r, transposeW]: 64-wide tiles with edges, r across the 16-rank chunk, odd rows (scalar W loads)
    ['float32', 136, 200, 4, false],
    ['float32', 136, 200, 40, true],
    ['bfloat16', 70, 96, 8, false],
    ['bfloat16', 96, 70, 8, true],
    ['float16', 70, 96, 20, false],
    ['float16', 96, 72, 3, true],
    ['float32', 70, 37, 5, false],
    ['float16', 37, 70, 5, true],
  ] as const)(
    'the tiles weight norm on 16×8 threads: %s W, out %i, in %i, r %i (transposeW %s)',
    async (dtype, out, inn, r, transposeW) => {
      const wShape = transposeW ? [inn, out] : [out, inn];
      const { bits, seen } = narrowed(randn(out * inn, 21), dtype);
      const a = randn(r * inn, 22, 0.3);
      const b = randn(out * r, 23, 0.3);
      const res = await onBoth((on) => {
        on.setWeightNormVariant('tiles');
        on.setTuning({ normWorkgroups: 6 }); // slices of the input dimension
        const y = on.weightNorm(up(on, bits, wShape, dtype), up(on, a, [r, inn]), up(on, b, [out, r]), 1.5, { transposeW });
        return { y, shape: [out] };
      });
      const program = `weight-norm:${dtype}:float32:float32:${transposeW ? 'T' : 'N'}:${(transposeW ? out : inn) % 4 ? 'scalar' : 'vec'}:${r <= 16 ? 'r1' : 'rk'}:8`;
      expect(res.compat.programs).toEqual([program, ...(res.compat.programs.includes('weight-norm-finish') ? ['weight-norm-finish'] : [])]);
      expect(res.compat.dispatches).toBe(2);
      expect(res.full.dispatches).toBe(2);
      const ref = weightNormHost(seen, a, b, out, inn, r, 1.5, transposeW);
      expect(relativeError(res.compat.out, ref)).toBeLessThan(1e-4);
      expect(relativeError(res.full.out, ref)).toBeLessThan(1e-4);
    },
  );

  it('nf4 W: x·Wᵀ at one and 40 tokens, and the weight norm in both layouts, W widened in registers', async () => {
    const [rows, cols] = [48, 128];
    const host = quantizeHost(randn(rows * cols, 3), [rows, cols], { format: 'nf4', name: 'w' });
    const values = dequantizeHost(host);
    if (host.format === 'int8') throw new Error('nf4 expected');
    const q = (on: WebGpuBackend): QuantizedInfo<GpuTensor> => ({
      format: 'nf4',
      shape: [rows, cols],
      data: up(on, host.data as Uint8Array, [rows, cols / 2], 'uint8'),
      scales: up(on, host.absmax as Float32Array, [host.absmax.length]),
      blocksize: host.blocksize,
    });
    for (const [T, program] of [
      [1, 'rows:1/128:gemv:nf4/64'],
      [40, 'matmul-tiled:4x4x16/8:float32:nf4/64:NT:vec4'],
    ] as const) {
      const x = randn(T * cols, 4);
      const r = await onBoth((on) => ({ y: on.matmulNarrow(up(on, x, [T, cols]), q(on), true, [T, rows]), shape: [T, rows] }));
      expect(r.compat.programs.some((k) => k.startsWith(program))).toBe(true);
      expect(relativeError(r.compat.out, matmulRef(x, [T, cols], values, [rows, cols], false, true).out)).toBeLessThan(1e-4);
      expect(r.compat.dispatches).toBe(r.full.dispatches);
    }
    for (const transposeW of [false, true]) {
      const r = 4;
      const [out, inn] = transposeW ? [cols, rows] : [rows, cols];
      const a = randn(r * inn, 5, 0.3);
      const b = randn(out * r, 6, 0.3);
      const ref = weightNormHost(values, a, b, out, inn, r, 1.5, transposeW);
      const res = await onBoth((on) => ({
        y: on.weightNormNarrow(q(on), up(on, a, [r, inn]), up(on, b, [out, r]), 1.5, { transposeW }),
        shape: [out],
      }));
      // The row-streaming norm (Linear layout, 128 threads) or the tiles norm: W is never widened into a buffer.
      expect(res.compat.programs.filter((k) => /^(dequantize|cast|matmul)/.test(k))).toEqual([]);
      expect(
        res.compat.programs.some((k) => k.startsWith(transposeW ? 'weight-norm:nf4/64:float32:float32:T:vec:r1:8' : 'rows:16/128:+norm4')),
      ).toBe(true);
      expect(res.compat.dispatches).toBe(res.full.dispatches);
      expect(relativeError(res.compat.out, ref)).toBeLessThan(1e-4);
    }
  });

  it('one decode step of a DoRA Linear: the GEMV and the norm from one read of W on 128 threads', async () => {
    const [inn, out, r] = [96, 40, 4];
    const [x, w, a, b] = [randn(inn, 31), randn(out * inn, 32), randn(r * inn, 33, 0.3), randn(out * r, 34, 0.3)];
    for (const on of [be, full]) {
      const fused0 = on.stats().fused;
      const before = on.stats().dispatches;
      const res = on.matmulWeightNorm(
        up(on, x, [1, inn]),
        { data: on.upload(w, [out, inn], 'float32'), shape: [out, inn], dtype: 'float32' },
        up(on, a, [r, inn]),
        up(on, b, [out, r]),
        2,
        {},
      );
      expect(res).not.toBeNull();
      on.flush();
      expect(on.stats().dispatches - before).toBe(1);
      expect(on.stats().fused - fused0).toBe(1);
      expect(relativeError(await down(on, res!.base, [1, out]), matmulRef(x, [1, inn], w, [out, inn], false, true).out)).toBeLessThan(1e-4);
      expect(relativeError(await down(on, res!.norm, [out]), weightNormHost(w, a, b, out, inn, r, 2, false))).toBeLessThan(1e-4);
    }
    expect(be.programKeys().some((k) => k.startsWith('rows:') && k.includes('/128:gemv+norm4'))).toBe(true);
  });

  it.each([
    [64, 96, 80, false],
    [1, 96, 80, false],
    [1, 96, 80, true],
    [40, 16, 24, false],
    [3, 100, 7, true],
  ] as const)('matmul [%i, %i]·[%i] (transposeB %s)', async (M, K, N, transB) => {
    const a = randn(M * K, 1);
    const b = randn(K * N, 2);
    const bShape = transB ? [N, K] : [K, N];
    const r = await onBoth((on) => ({ y: on.matmul(up(on, a, [M, K]), up(on, b, bShape), { transposeB: transB }, [M, N]), shape: [M, N] }));
    expect(relativeError(r.compat.out, matmulRef(a, [M, K], b, bShape, false, transB).out)).toBeLessThan(1e-4);
    expect(r.compat.dispatches).toBe(r.full.dispatches);
  });
});
