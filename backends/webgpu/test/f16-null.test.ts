/**
 * The f16 binding of float16 W (f16.test.ts) on Dawn's Null backend, which lists every feature and
 * validates WGSL (Tint) but executes nothing: every program that reads a float16 W is compiled with
 * `array<f16>` and must validate. Neither runtime the other tests run on (llvmpipe through Dawn's GLES
 * backend, SwiftShader in Chromium) has `shader-f16`. Its own file: a second Dawn instance (GLES) in the
 * same process brings Dawn down on the first submit.
 */
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend } from '../src/index.js';
import { ALL_FAMILIES, battery, w16Programs } from './helpers/f16-battery.js';

/** Dawn's instance must outlive its devices (collected early, it brings the process down). */
let dawn: GPU | null = null;

describe("f16 programs on Dawn's Null backend (shader-f16, WGSL validated, nothing executed)", () => {
  it('compiles every program that reads a float16 W with the f16 binding', async () => {
    const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU };
    dawn = create(['backend=null']);
    const adapter = await dawn.requestAdapter();
    expect(adapter?.features.has('shader-f16')).toBe(true);
    const device = await adapter!.requestDevice({ requiredFeatures: ['shader-f16'] });
    try {
      // The Null device validates WGSL: an f16 value where an f32 is due is refused, its conversion is not.
      // (In an error scope: an uncaptured error on a device without a listener brings Dawn's Node bindings down.)
      const messages = async (code: string) => {
        device.pushErrorScope('validation');
        const info = await device.createShaderModule({ code }).getCompilationInfo();
        await device.popErrorScope();
        return info.messages.filter((m) => m.type === 'error').map((m) => m.message);
      };
      const shader = (expr: string) =>
        `enable f16;\n@group(0) @binding(0) var<storage, read> W: array<vec4<f16>>;\n@group(0) @binding(1) var<storage, read_write> Y: array<vec4<f32>>;\n@compute @workgroup_size(1) fn main() { Y[0] = ${expr}; }`;
      expect(await messages(shader('W[0]'))).not.toEqual([]);
      expect(await messages(shader('vec4<f32>(W[0])'))).toEqual([]);

      const be = await createWebGpuBackend({ device, destroyDevice: false });
      const split = await createWebGpuBackend({ device, destroyDevice: false, maxBufferBytes: 1024 });
      try {
        expect(be.usesShaderF16).toBe(true);
        await battery(be, split, false);
        await be.sync(); // throws the first program that failed to compile
        await split.sync();
        expect(w16Programs([...be.programKeys(), ...split.programKeys()], 'f16')).toEqual(ALL_FAMILIES);
        expect(w16Programs([...be.programKeys(), ...split.programKeys()], 'float16')).toEqual([]);
      } finally {
        be.dispose();
        split.dispose();
      }
    } finally {
      device.destroy();
    }
  });
});
