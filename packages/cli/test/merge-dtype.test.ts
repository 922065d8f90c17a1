/**
 * `dora merge` on a BF16 / F16 base writes the merged weights in the base's dtype: PEFT's float32 merge
 * rounded to that dtype, at most 1 ulp apart. The reference is a float64 port of PEFT's DoRA merge
 * (W' = m / ‖W + s·B·A‖ ⊙ (W + s·B·A), rows), first checked against PEFT's own float32 merge of the
 * float32 fixture (fixtures/peft/llama/merged.safetensors), then applied to the narrowed base.
 */
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type HostTensor } from '@dorajs/core';
import { saveSafetensors } from '@dorajs/core/node';
import { describe, expect, it } from 'vitest';
import { dora, FIXTURES, floats, readTensors, tempDir } from './helpers.js';

const base = join(FIXTURES, 'llama', 'base');
const adapterDir = join(FIXTURES, 'llama', 'adapter');

/** PEFT's merge of every adapted module, in float64: Map<weight key, values>. */
function referenceMerge(weights: (key: string) => Float64Array): Map<string, Float64Array> {
  const config = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
  const s = config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
  const adapter = readTensors(join(adapterDir, 'adapter_model.safetensors'));
  const out = new Map<string, Float64Array>();
  for (const key of adapter.keys()) {
    if (!key.endsWith('.lora_A.weight')) continue;
    const path = key.slice('base_model.model.'.length, -'.lora_A.weight'.length);
    const a = adapter.get(key)!;
    const [r, inF] = a.shape as [number, number];
    const A = floats(adapter, key);
    const B = floats(adapter, `base_model.model.${path}.lora_B.weight`);
    const m = floats(adapter, `base_model.model.${path}.lora_magnitude_vector`);
    const W = weights(`${path}.weight`);
    const outF = W.length / inF;
    const merged = new Float64Array(W.length);
    for (let o = 0; o < outF; o++) {
      let norm = 0;
      for (let i = 0; i < inF; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += B[o * r + k]! * A[k * inF + i]!;
        const v = W[o * inF + i]! + s * d;
        merged[o * inF + i] = v;
        norm += v * v;
      }
      const g = m[o]! / Math.sqrt(norm);
      for (let i = 0; i < inF; i++) merged[o * inF + i]! *= g;
    }
    out.set(`${path}.weight`, merged);
  }
  return out;
}

const NARROW = {
  BF16: { to: f32ToBf16, from: bf16ToF32 },
  F16: { to: f32ToF16, from: f16ToF32 },
} as const;

/** Distance in units in the last place of `dtype` between two values of it. */
function ulps(dtype: keyof typeof NARROW, got: number, want: number): number {
  const a = NARROW[dtype].to(got);
  const b = NARROW[dtype].to(want);
  const signed = (x: number) => (x & 0x8000 ? -(x & 0x7fff) : x);
  return Math.abs(signed(a) - signed(b));
}

describe('dora merge keeps the base checkpoint dtype', () => {
  it('the float64 port equals PEFT’s float32 merge of the float32 fixture', () => {
    const w = readTensors(join(base, 'model.safetensors'));
    const golden = readTensors(join(FIXTURES, 'llama', 'merged.safetensors'));
    const ref = referenceMerge((k) => Float64Array.from(floats(w, k)));
    expect(ref.size).toBeGreaterThan(3);
    for (const [k, v] of ref) {
      const g = floats(golden, k);
      let max = 0;
      let err = 0;
      for (let i = 0; i < g.length; i++) {
        max = Math.max(max, Math.abs(g[i]!));
        err = Math.max(err, Math.abs(g[i]! - v[i]!));
      }
      expect(err / max, k).toBeLessThanOrEqual(1e-5);
    }
  });

  it.each(['BF16', 'F16'] as const)(
    '%s base: merged weights written in the base dtype, ≤ 1 ulp from PEFT’s float32 merge rounded',
    async (dtype) => {
      const dir = tempDir();
      const model = join(dir, 'model');
      const src = readTensors(join(base, 'model.safetensors'));
      const narrowed = new Map<string, HostTensor>();
      for (const [k, t] of src) {
        const f = floats(src, k);
        narrowed.set(k, { dtype, shape: [...t.shape], data: Uint16Array.from(f, NARROW[dtype].to) });
      }
      const { mkdirSync } = await import('node:fs');
      mkdirSync(model);
      await saveSafetensors(join(model, 'model.safetensors'), narrowed);
      copyFileSync(join(base, 'config.json'), join(model, 'config.json'));
      const out = join(dir, 'merged');
      const r = await dora('merge', '--model', model, '--adapter', adapterDir, '--out', out, '--backend', 'cpu');
      expect(r.code, r.stderr).toBe(0);
      const merged = readTensors(join(out, 'model.safetensors'));
      for (const [k, t] of merged) expect(t.dtype, k).toBe(dtype);
      const ref = referenceMerge((k) => Float64Array.from(narrowed.get(k)!.data as Uint16Array, NARROW[dtype].from));
      let worst = 0;
      let changed = 0;
      for (const [k, want] of ref) {
        const got = merged.get(k)!.data as Uint16Array;
        const before = narrowed.get(k)!.data as Uint16Array;
        for (let i = 0; i < want.length; i++) {
          // PEFT's float32 merge, rounded to the base dtype.
          const peft = Math.fround(want[i]!);
          worst = Math.max(worst, ulps(dtype, NARROW[dtype].from(got[i]!), peft));
          if (got[i] !== before[i]) changed++;
        }
      }
      expect(worst).toBeLessThanOrEqual(1);
      // The adapter matters: most merged weights differ from the base.
      expect(changed).toBeGreaterThan(100);
      // Weights no adapter touches come back bit for bit.
      for (const [k, t] of narrowed) if (!ref.has(k)) expect(merged.get(k)!.data, k).toEqual(t.data);
    },
  );
});
