import { describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  f32ToBf16,
  f32ToF16,
  parseSafetensors,
  parseSafetensorsHeader,
  SafetensorsError,
  serializeSafetensors,
  toFloat32,
  type HostTensor,
} from '../../src/index.js';
import { craft, entry } from './craft.js';

const origin = { file: 'mem', key: 'k' };

/** One tensor of each writable dtype, with edge values (extremes, negative zero, NaN bit patterns). */
function everyDtype(): Record<string, HostTensor> {
  return {
    f32: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1.5, -0, 3.4e38, -1e-45, Infinity, NaN]) },
    f16: { dtype: 'F16', shape: [3], data: new Uint16Array([f32ToF16(1), f32ToF16(-65504), 0x7e00]) },
    bf16: { dtype: 'BF16', shape: [1, 3], data: new Uint16Array([f32ToBf16(3.140625), f32ToBf16(-2), 0x7fc0]) },
    i64: { dtype: 'I64', shape: [3], data: new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n]) },
    i32: { dtype: 'I32', shape: [2, 2], data: new Int32Array([-(2 ** 31), -1, 0, 2 ** 31 - 1]) },
    i8: { dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) },
    u8: { dtype: 'U8', shape: [5], data: new Uint8Array([0, 1, 2, 254, 255]) },
  };
}

describe('safetensors round trip in memory', () => {
  it.each(Object.entries(everyDtype()))('keeps %s exactly (dtype, shape, bits)', (key, tensor) => {
    const back = parseSafetensors(serializeSafetensors({ [key]: tensor })).tensors.get(key)!;
    expect(back.dtype).toBe(tensor.dtype);
    expect(back.shape).toEqual(tensor.shape);
    expect(back.data.constructor).toBe(tensor.data.constructor);
    const bits = (t: HostTensor) => [...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)];
    expect(bits(back)).toEqual(bits(tensor));
  });

  it('keeps every dtype together in one file, each aligned to its item size', () => {
    const tensors = everyDtype();
    const bytes = serializeSafetensors(tensors, { format: 'pt' });
    const parsed = parseSafetensors(bytes);
    expect(parsed.metadata).toEqual({ format: 'pt' });
    expect(new Set(parsed.tensors.keys())).toEqual(new Set(Object.keys(tensors)));
    const header = parseSafetensorsHeader(bytes);
    expect(header.dataStart % 8).toBe(0);
    for (const e of header.entries) expect(e.begin % (e.dtype === 'I64' ? 8 : e.dtype.endsWith('8') ? 1 : 2)).toBe(0);
  });

  it('orders tensors like the Python library: wider dtypes first, then by key', () => {
    const bytes = serializeSafetensors(everyDtype());
    expect(parseSafetensorsHeader(bytes).entries.map((e) => e.dtype)).toEqual(['I64', 'F32', 'I32', 'BF16', 'F16', 'I8', 'U8']);
    const sameType = serializeSafetensors({
      b: { dtype: 'U8', shape: [1], data: new Uint8Array([2]) },
      a: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) },
      '10': { dtype: 'U8', shape: [1], data: new Uint8Array([4]) },
      '9': { dtype: 'U8', shape: [1], data: new Uint8Array([3]) },
    });
    expect(parseSafetensorsHeader(sameType).entries.map((e) => e.key)).toEqual(['10', '9', 'a', 'b']);
  });

  it('pads the JSON header with spaces to a multiple of 8 bytes', () => {
    const bytes = serializeSafetensors({ w: { dtype: 'U8', shape: [1], data: new Uint8Array([7]) } });
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + length));
    expect(length % 8).toBe(0);
    expect(text.trimEnd()).toBe('{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}');
    expect(text.slice(text.trimEnd().length)).toMatch(/^ *$/);
  });

  it('widens F16 and BF16 to the float32 values they encode', () => {
    const tensors = parseSafetensors(serializeSafetensors(everyDtype())).tensors;
    expect([...toFloat32(tensors.get('bf16')!, origin)].slice(0, 2)).toEqual([3.140625, -2]);
    expect(Number.isNaN(toFloat32(tensors.get('bf16')!, origin)[2])).toBe(true);
    expect([...toFloat32(tensors.get('f16')!, origin)].slice(0, 2)).toEqual([1, -65504]);
    expect(bf16ToF32(f32ToBf16(1))).toBe(1);
  });

  it('handles zero-size tensors, scalars, odd key characters and a __proto__ key', () => {
    const tensors: Record<string, HostTensor> = {
      empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      scalar: { dtype: 'F32', shape: [], data: new Float32Array([2.5]) },
      'naïve "quoted" \\ key': { dtype: 'I32', shape: [1], data: new Int32Array([9]) },
    };
    Object.defineProperty(tensors, '__proto__', {
      value: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) },
      enumerable: true,
    });
    const back = parseSafetensors(serializeSafetensors(tensors)).tensors;
    expect(back.get('empty')).toMatchObject({ shape: [0, 4] });
    expect([...back.get('scalar')!.data]).toEqual([2.5]);
    expect([...back.get('naïve "quoted" \\ key')!.data]).toEqual([9]);
    expect([...back.get('__proto__')!.data]).toEqual([1]);
  });

  it('reads tensors whose offsets are not aligned to their item size (copying them)', () => {
    const data = new Uint8Array(5);
    new DataView(data.buffer).setFloat32(1, 1.25, true);
    const bytes = craft({ u: entry('U8', [1], [0, 1]), f: entry('F32', [1], [1, 5]) }, data);
    const f = parseSafetensors(bytes).tensors.get('f')!;
    expect([...f.data]).toEqual([1.25]);
  });

  it('takes a Map as well as a record', () => {
    const map = new Map<string, HostTensor>([['m', { dtype: 'I8', shape: [2], data: new Int8Array([-1, 1]) }]]);
    expect([...parseSafetensors(serializeSafetensors(map)).tensors.get('m')!.data]).toEqual([-1, 1]);
  });
});

describe('serializeSafetensors rejects bad tensors, naming the key', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    [
      'data length differs from the shape',
      { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } },
      'has 4 elements but data has 3',
    ],
    [
      'data array of the wrong type',
      { w: { dtype: 'F32', shape: [1], data: new Int32Array(1) } },
      'must be a Float32Array, got Int32Array',
    ],
    ['unwritable dtype', { w: { dtype: 'F64', shape: [1], data: new Float64Array(1) } }, 'cannot write dtype F64'],
    ['negative dimension', { w: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } }, 'non-negative integers'],
    ['reserved key', { __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }, 'is reserved'],
  ];
  it.each(cases)('%s', (_name, tensors, says) => {
    const key = Object.keys(tensors)[0]!;
    expect(() => serializeSafetensors(tensors as Record<string, HostTensor>)).toThrowError(SafetensorsError);
    expect(() => serializeSafetensors(tensors as Record<string, HostTensor>)).toThrowError(`<memory> [${key}]: `);
    expect(() => serializeSafetensors(tensors as Record<string, HostTensor>)).toThrowError(says);
  });

  it('rejects metadata values that are not strings', () => {
    expect(() => serializeSafetensors({}, { format: 1 } as never)).toThrowError(
      "<memory> [__metadata__]: metadata value of 'format' must be a string",
    );
  });
});
