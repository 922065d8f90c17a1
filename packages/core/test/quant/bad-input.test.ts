/** Bad input to quantization: typed QuantizationErrors naming the tensor, thrown before anything is converted. */
import { describe, expect, it } from 'vitest';
import { type QuantizedHost, QuantizationError, quantizeHost, validateQuantized } from '../../src/index.js';

const w = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1);

describe('quantization bad input', () => {
  it.each([
    ['NaN', Number.NaN],
    ['+Inf', Number.POSITIVE_INFINITY],
    ['-Inf', Number.NEGATIVE_INFINITY],
  ])('a weight holding %s is refused, naming the tensor and the element', (_, bad) => {
    for (const format of ['nf4', 'fp4', 'int8'] as const) {
      const values = w(128);
      values[77] = bad;
      const err = (() => {
        try {
          quantizeHost(values, [2, 64], { format, name: 'model.layers.0.mlp.up_proj.weight' });
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(QuantizationError);
      expect((err as QuantizationError).tensor).toBe('model.layers.0.mlp.up_proj.weight');
      expect((err as Error).message).toMatch(/up_proj\.weight: element 77 is/);
    }
  });

  it('an int8 weight beyond float16 range is refused (bitsandbytes quantizes float16)', () => {
    const values = w(64);
    values[3] = 1e6;
    expect(() => quantizeHost(values, [1, 64], { format: 'int8', name: 'big' })).toThrow(/big: element 3 .* overflows float16/);
  });

  it('unsupported block sizes and quant types are refused', () => {
    expect(() => quantizeHost(w(128), [2, 64], { format: 'nf4', blocksize: 32, name: 'w' })).toThrow(
      /w: block size 32 is not supported \(one of 64, 128/,
    );
    expect(() => quantizeHost(w(128), [2, 64], { format: 'nf4', blocksize: 100, name: 'w' })).toThrow(QuantizationError);
    expect(() => quantizeHost(w(128), [2, 64], { format: 'int4' as never, name: 'w' })).toThrow(/w: quant type 'int4' is not supported/);
    expect(() => quantizeHost(w(128), [2, 64], { format: 'int8', doubleQuant: true, name: 'w' })).toThrow(/one scale per row/);
    expect(() => quantizeHost(w(127), [2, 64], { format: 'nf4', name: 'w' })).toThrow(/w: 127 values do not fill \[2, 64\]/);
  });

  it('a packed weight of the wrong length is refused, naming the part', () => {
    const good = quantizeHost(w(640), [10, 64], { format: 'nf4', doubleQuant: true, name: 'w' });
    expect(() => validateQuantized(good, 'w')).not.toThrow();
    const bad = (patch: Partial<Record<string, unknown>>) => ({ ...good, ...patch }) as QuantizedHost;
    expect(() => validateQuantized(bad({ data: good.data.subarray(1) }), 'q.weight')).toThrow(
      /q\.weight: packed nf4 data has 319 elements, expected 320 for \[10, 64\]/,
    );
    expect(() => validateQuantized(bad({ absmax: new Uint8Array(9) }), 'q.weight')).toThrow(/absmax has 9 elements, expected 10/);
    expect(() => validateQuantized(bad({ blocksize: 48 }), 'q.weight')).toThrow(/block size 48 is not supported/);
    expect(() => validateQuantized(bad({ absmax: new Float32Array(10) }), 'q.weight')).toThrow(/double-quantized absmax must be uint8/);
    expect(() => validateQuantized(bad({ format: 'af4' }), 'q.weight')).toThrow(/quant type 'af4'/);
    const int8 = quantizeHost(w(640), [10, 64], { format: 'int8', name: 'w' });
    expect(() => validateQuantized({ ...int8, scb: new Float32Array(9) } as QuantizedHost, 'i.weight')).toThrow(
      /i\.weight: SCB has 9 elements, expected 10/,
    );
  });
});
