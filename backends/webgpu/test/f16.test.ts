/**
 * float16 W, two ways: bound as `array<f16>` (`enable f16;`) on a device with `shader-f16`, or as packed
 * u32 words widened with `unpack2x16float` (every device). Both widen exactly in registers, so every
 * program that reads W — the row-streaming GEMV and norm, the GEMV, small-K and tiled matmuls (vec4,
 * scalar, split-K), the `tiles` norm, the gather of one buffer or of a split table — must give the same
 * bits either way. The `shaderF16` option (default on) picks the f16 binding where the device has it.
 *
 * Neither runtime these tests run on has `shader-f16`: Dawn's OpenGL ES backend on llvmpipe (here and in
 * CI) lists none, nor does headless Chromium's SwiftShader (browser.test.ts checks). So:
 * - on the real device, the packed-u32 path runs (asserted) and matches float64 references, the same bits
 *   with the option on and off; on a device that has `shader-f16`, the same test compares both paths;
 * - f16-null.test.ts compiles every f16 program on Dawn's Null backend (it lists every feature and
 *   validates WGSL, but executes nothing).
 */
import { relativeError } from '@dorajs/backend-conformance';
import { afterAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../src/index.js';
import { ALL_FAMILIES, battery, w16Programs } from './helpers/f16-battery.js';
import { setupGpu } from './helpers/gpu.js';

const { backend, skipReason } = await setupGpu();

describe.skipIf(!backend)(`float16 W on this device${skipReason ? ` (${skipReason})` : ''}`, () => {
  const be = backend!;
  const backends: WebGpuBackend[] = [];
  afterAll(() => {
    for (const b of backends) b.dispose();
    be.dispose();
  });

  it('the f16 binding where the device has shader-f16, else packed u32: the same bits', async () => {
    const hasF16 = be.device.features.has('shader-f16');
    // What ran here: Dawn's GLES backend on llvmpipe (CI) has no shader-f16, so the packed-u32 path did.
    if (/opengles/.test(be.description)) expect(hasF16, `${be.description} lists shader-f16: update docs/narrow-weights.md`).toBe(false);
    expect(be.usesShaderF16).toBe(hasF16);
    const on = be;
    const off = await createWebGpuBackend({ device: be.device, shaderF16: false });
    const splitOn = await createWebGpuBackend({ device: be.device, maxBufferBytes: 1024 });
    const splitOff = await createWebGpuBackend({ device: be.device, maxBufferBytes: 1024, shaderF16: false });
    backends.push(off, splitOn, splitOff);
    expect(off.usesShaderF16).toBe(false);
    const a = await battery(on, splitOn, true);
    const b = await battery(off, splitOff, true);
    expect(w16Programs([...off.programKeys(), ...splitOff.programKeys()], 'f16')).toEqual([]);
    expect(w16Programs([...off.programKeys(), ...splitOff.programKeys()], 'float16')).toEqual(ALL_FAMILIES);
    expect(w16Programs([...on.programKeys(), ...splitOn.programKeys()], hasF16 ? 'f16' : 'float16')).toEqual(ALL_FAMILIES);
    for (let i = 0; i < a.length; i++) {
      const { name, out, ref } = a[i]!;
      expect(relativeError(out, ref), name).toBeLessThan(1e-4);
      expect(new Uint32Array(out.buffer), name).toEqual(new Uint32Array(b[i]!.out.buffer));
    }
  });
});
