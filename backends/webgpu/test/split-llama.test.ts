/**
 * Llama-3.2-1B's tied bf16 embedding, [128256, 2048] = 525 MB, on a device with WebGPU's default limits
 * (256 MiB buffers, 128 MiB bindings, as a browser grants without asking): it is split over buffers, and
 * the embedding gather and the tied LM head (x·Eᵀ) read it whole. One large test (about 1.5 GB of host
 * memory on llvmpipe), kept in its own file.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32, type TensorInfo } from '@dorajs/core';
import { createWebGpuBackend, type GpuTensor, type WebGpuBackend } from '../src/index.js';
import { randn } from './helpers/reference.js';
import { relativeError } from '@dorajs/backend-conformance';

interface Dawn {
  create(flags: string[]): GPU;
}

// Dawn instances must outlive their devices (a collected instance aborts the process).
const instances: GPU[] = [];

/**
 * A device with core WebGPU's default limits, from Dawn's native or OpenGL ES adapter. The OpenGL ES
 * adapter runs at the compatibility feature level, whose defaults are lower (128 invocations per
 * workgroup): the compute limits are raised to core's defaults, the buffer limits are left as they are.
 */
async function defaultDevice(): Promise<GPUDevice | null> {
  const specifier = 'webgpu';
  const dawn = (await import(/* @vite-ignore */ specifier)) as Dawn;
  for (const [flags, options] of [
    [[], {}],
    [['backend=opengles'], { featureLevel: 'compatibility' }],
  ] as const) {
    const gpu = dawn.create([...flags]);
    instances.push(gpu);
    const adapter = await gpu.requestAdapter(options as GPURequestAdapterOptions);
    if (!adapter) continue;
    const core = { maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256 };
    const requiredLimits = Object.fromEntries(
      Object.entries(core).map(([k, v]) => [k, Math.min(v, adapter.limits[k as keyof typeof core])]),
    );
    return adapter.requestDevice({ requiredLimits });
  }
  if (process.env.CI === 'true') throw new Error('CI requires a WebGPU adapter (Mesa llvmpipe with EGL_PLATFORM=surfaceless)');
  return null;
}

const device = await defaultDevice();
const be: WebGpuBackend | null = device ? await createWebGpuBackend({ device, destroyDevice: true }) : null;
afterAll(() => be?.dispose());

const [VOCAB, DIM] = [128256, 2048];

describe.skipIf(!be)('webgpu: a 525 MB bf16 embedding on a default-limits device', () => {
  it('splits it, gathers rows from every part and runs the tied LM head x·Eᵀ', async () => {
    const gpu = be!;
    expect(gpu.device.limits.maxStorageBufferBindingSize).toBeLessThanOrEqual(256 * 2 ** 20);
    expect(VOCAB * DIM * 2).toBeGreaterThan(gpu.device.limits.maxBufferSize);
    // Deterministic bf16 values ±[2^-7, 2^-6) with varied mantissas.
    const bits = new Uint16Array(VOCAB * DIM);
    let h = 12345;
    for (let i = 0; i < bits.length; i++) {
      h = (Math.imul(h, 1103515245) + 12345) >>> 0;
      bits[i] = ((h >>> 16) & 0x807f) | 0x3c00;
    }
    const E: TensorInfo<GpuTensor> = { data: gpu.upload(bits, [VOCAB, DIM], 'bfloat16'), shape: [VOCAB, DIM], dtype: 'bfloat16' };
    expect(gpu.buffersOf(E.data)).toBeGreaterThanOrEqual(5);

    const ids = [0, 1, 65535, 65536, 100000, VOCAB - 1];
    const idx: TensorInfo<GpuTensor> = {
      data: gpu.upload(Int32Array.from(ids), [ids.length], 'int32'),
      shape: [ids.length],
      dtype: 'int32',
    };
    const rows = gpu.gather(E, idx);
    const got = (await gpu.download({ data: rows, shape: [ids.length, DIM], dtype: 'float32' })) as Float32Array;
    const want = new Float32Array(ids.length * DIM);
    ids.forEach((r, j) => {
      for (let c = 0; c < DIM; c++) want[j * DIM + c] = bf16ToF32(bits[r * DIM + c]!);
    });
    expect(Array.from(got)).toEqual(Array.from(want));

    const x = randn(DIM, 3);
    const X: TensorInfo<GpuTensor> = { data: gpu.upload(x, [1, DIM], 'float32'), shape: [1, DIM], dtype: 'float32' };
    const logits = gpu.matmul(X, E, { transposeB: true }, [1, VOCAB]);
    const y = (await gpu.download({ data: logits, shape: [1, VOCAB], dtype: 'float32' })) as Float32Array;
    const widened = Float32Array.from({ length: 65536 }, (_, b) => bf16ToF32(b));
    const ref = new Float64Array(VOCAB);
    for (let v = 0; v < VOCAB; v++) {
      let s = 0;
      for (let c = 0; c < DIM; c++) s += x[c]! * widened[bits[v * DIM + c]!]!;
      ref[v] = s;
    }
    expect(relativeError(y, ref)).toBeLessThan(1e-5);
    for (const t of [E.data, idx.data, rows, X.data, logits]) gpu.release(t);
  });
});
