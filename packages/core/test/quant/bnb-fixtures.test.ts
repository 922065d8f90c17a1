/**
 * The host quantizer against fixtures/narrow/quant.safetensors, which a numpy port of bitsandbytes' CUDA
 * kernels wrote (fixtures/narrow/make_quant.py): the same packed bytes, absmax, nested state, SCB and
 * dequantized values, bit for bit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dequantizeHost, dynamicMap, parseSafetensors, type QuantizedHost, quantizeHost } from '../../src/index.js';
import { REPO_ROOT } from '../io/fixture-paths.js';

const FILE = join(REPO_ROOT, 'fixtures/narrow/quant.safetensors');
const contents = parseSafetensors(readFileSync(FILE), FILE);
const get = (key: string): Float32Array | Uint8Array | Int8Array => {
  const t = contents.tensors.get(key);
  if (!t) throw new Error(`${FILE}: no tensor '${key}'`);
  return t.data as Float32Array | Uint8Array | Int8Array;
};

interface FixtureCase {
  name: string;
  format: 'nf4' | 'fp4' | 'int8';
  shape: [number, number];
  nested?: boolean;
  nested_offset?: number;
}
const cases = JSON.parse(contents.metadata.cases!) as FixtureCase[];

/** Bit patterns, so -0 vs 0 and NaN compare exactly. */
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('bitsandbytes quantization (numpy port fixtures)', () => {
  it('has the cases the generator writes', () => {
    expect(cases.map((c) => c.name)).toEqual([
      'nf4_adversarial',
      'nf4_partial',
      'nf4_odd',
      'nf4_nested',
      'fp4_adversarial',
      'fp4_partial',
      'fp4_odd',
      'fp4_nested',
      'int8_rows',
    ]);
  });

  it('dynamicMap() equals create_dynamic_map()', () => {
    expect(bits(dynamicMap())).toEqual(bits(get('dynamic_map') as Float32Array));
  });

  for (const c of cases) {
    it(`${c.name}: quantize gives bitsandbytes' bytes and scales, dequantize its values`, () => {
      const input = get(`${c.name}.input`) as Float32Array;
      const q = quantizeHost(input, c.shape, { format: c.format, doubleQuant: !!c.nested, name: c.name });
      expect(Array.from(q.data)).toEqual(Array.from(get(`${c.name}.data`)));
      if (q.format === 'int8') {
        expect(bits(q.scb)).toEqual(bits(get(`${c.name}.scb`) as Float32Array));
      } else {
        expect(Array.from(q.absmax)).toEqual(Array.from(get(`${c.name}.absmax`)));
        if (c.nested) {
          expect(q.nested).not.toBeNull();
          expect(bits(q.nested!.absmax)).toEqual(bits(get(`${c.name}.nested_absmax`) as Float32Array));
          expect(bits(q.nested!.code)).toEqual(bits(get(`${c.name}.nested_quant_map`) as Float32Array));
          expect(q.nested!.offset).toBe(Math.fround(c.nested_offset!));
        } else {
          expect(q.nested).toBeNull();
        }
      }
      expect(bits(dequantizeHost(q))).toEqual(bits(get(`${c.name}.dequantized`) as Float32Array));
    });

    it(`${c.name}: dequantizing the fixture's own packed form gives its values`, () => {
      const host = fixtureQuantized(c);
      expect(bits(dequantizeHost(host))).toEqual(bits(get(`${c.name}.dequantized`) as Float32Array));
    });
  }
});

function fixtureQuantized(c: FixtureCase): QuantizedHost {
  if (c.format === 'int8') {
    return { format: 'int8', shape: c.shape, data: get(`${c.name}.data`) as Int8Array, scb: get(`${c.name}.scb`) as Float32Array };
  }
  return {
    format: c.format,
    shape: c.shape,
    blocksize: 64,
    data: get(`${c.name}.data`) as Uint8Array,
    absmax: get(`${c.name}.absmax`) as Float32Array | Uint8Array,
    nested: c.nested
      ? {
          absmax: get(`${c.name}.nested_absmax`) as Float32Array,
          code: get(`${c.name}.nested_quant_map`) as Float32Array,
          offset: c.nested_offset!,
          blocksize: 256,
        }
      : null,
  };
}
