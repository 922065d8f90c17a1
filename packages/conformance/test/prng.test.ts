import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../src/prng.js';

describe('SeededRandom', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = new SeededRandom(42).float32(8);
    expect(Array.from(new SeededRandom(42).float32(8))).toEqual(Array.from(a));
    expect(Array.from(new SeededRandom(43).float32(8))).not.toEqual(Array.from(a));
  });

  it('pins its sequence (cases must see the same inputs on every machine and version)', () => {
    const r = new SeededRandom(1);
    expect([r.next(), r.next(), r.next()].map((v) => v.toFixed(12))).toEqual(['0.627073940588', '0.002735721180', '0.527447039960']);
  });

  it('draws in range with roughly the right moments', () => {
    const r = new SeededRandom(7);
    const ints = r.int32(1000, -3, 4);
    expect(Math.min(...ints)).toBe(-3);
    expect(Math.max(...ints)).toBe(3);
    const n = r.float32(20_000);
    const mean = n.reduce((s, v) => s + v, 0) / n.length;
    const variance = n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});
