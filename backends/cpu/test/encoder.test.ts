/** The wasm writer: encodings the kernels rely on, checked by running the emitted code. */
import { describe, expect, it } from 'vitest';
import { F32, F64, I, i32, f64, ModuleBuilder, V } from '../src/wasm/encoder.js';
import { wasmApi } from '../src/wasm/wasm-api.js';

function instantiate(mb: ModuleBuilder): Record<string, (...a: number[]) => number> {
  const memory = new wasmApi!.Memory({ initial: 1, maximum: 2 });
  return new wasmApi!.Instance(new wasmApi!.Module(mb.bytes()), { env: { memory } }).exports as never;
}

describe('wasm encoder', () => {
  it('encodes i32 constants of every size, including addresses past 2 GiB (signed LEB128)', () => {
    const mb = new ModuleBuilder({ initialPages: 1, maximumPages: 2, shared: false });
    const values = [0, 63, 64, -64, -65, 8191, 2 ** 31 - 1, -(2 ** 31), 3_000_000_000];
    values.forEach((v, k) => mb.func(`c${k}`, [], [i32], (c) => void c.push(v)));
    const e = instantiate(mb);
    values.forEach((v, k) => expect(e[`c${k}`]!() >>> 0).toBe(v >>> 0));
  });

  it('encodes float constants exactly, loops, memarg offsets and SIMD lanes', () => {
    const mb = new ModuleBuilder({ initialPages: 1, maximumPages: 2, shared: false });
    mb.func('f', [], [f64], (c) => void c.push(F64.add(F64.const(0.1), F64.promote(F32.const(1 / 3)))));
    // Σ_{i<n} i with a do-while, and a store/load at a large constant offset.
    mb.func('sum', [i32], [i32], (c, [n]) => {
      const [i, s] = c.localsOf(i32, 2);
      c.for(i, 0, n, 1, () => c.set(s, I.add(s, i)));
      c.storeI32(0, s, 40_000);
      c.push(I.load(0, 40_000));
    });
    mb.func('lanes', [], [f64], (c) => {
      const v = c.local(0x7b);
      c.set(v, V.constF32(1, 2, 3, 4));
      c.push(
        F64.promote(F32.add(V.lane(V.mul(v, v), 3), V.lane(V.shuffle(v, v, [4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]), 0))),
      );
    });
    const e = instantiate(mb);
    expect(e.f!()).toBe(0.1 + Math.fround(1 / 3));
    expect(e.sum!(100)).toBe(4950);
    expect(e.sum!(0)).toBe(0);
    expect(e.lanes!()).toBe(16 + 2);
  });
});
