/**
 * The safetensors reference (Rust crate `safetensors`, src/tensor.rs) reads the header with serde_json into
 * `HashMap<String, TensorInfo>` (`dtype: Dtype`, `shape: Vec<usize>`, `data_offsets: (usize, usize)`) plus an
 * optional `__metadata__: HashMap<String, String>`, then `validate()`s offsets. One case per rule of that
 * grammar that `JSON.parse` alone would let through, and the valid spellings that must stay accepted.
 */
import { describe, expect, it } from 'vitest';
import { parseSafetensors, SafetensorsError } from '../../src/index.js';
import { craft } from './craft.js';

const F32_ONE = (shape: string, offsets: string) => `{"w":{"dtype":"F32","shape":${shape},"data_offsets":${offsets}}}`;

function reject(header: string, data: number, says: string, key?: string): void {
  let error: unknown;
  try {
    parseSafetensors(craft(header, data), 'g.safetensors');
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(SafetensorsError);
  expect((error as SafetensorsError).message).toContain(says);
  expect((error as SafetensorsError).key).toBe(key);
}

describe('safetensors header grammar (the Rust reference rules)', () => {
  describe('usize fields take unsigned integer literals only (serde_json reads the others as floats)', () => {
    it('rejects a fraction in a shape: 4.0', () => reject(F32_ONE('[4.0]', '[0,16]'), 16, 'got [4.0]', 'w'));
    it('rejects an exponent in a shape: 1E0', () => reject(F32_ONE('[1E0]', '[0,4]'), 4, 'got [1E0]', 'w'));
    it('rejects an exponent on zero in offsets: 0e0', () => reject(F32_ONE('[1]', '[0e0,4]'), 4, 'got [0e0, 4]', 'w'));
    it('rejects negative zero: -0', () => reject(F32_ONE('[1]', '[-0,4]'), 4, 'got [-0, 4]', 'w'));
    it('rejects a negative integer: -1', () => reject(F32_ONE('[-1]', '[0,4]'), 4, 'non-negative integers', 'w'));
    it('rejects an integer past 2^64: the reference overflows to a float', () =>
      reject(F32_ONE('[1]', '[0,36893488147419103232]'), 4, 'data_offsets must be', 'w'));
    it('rejects a leading zero: 04 (not JSON)', () => reject(F32_ONE('[04]', '[0,16]'), 16, 'leading zero'));
    it('accepts plain integers, including 0', () => {
      const { tensors } = parseSafetensors(craft(F32_ONE('[0, 2]', '[0, 0]'), 0));
      expect(tensors.get('w')!.shape).toEqual([0, 2]);
    });
  });

  describe('strings are well-formed Unicode', () => {
    it('rejects a key with an unpaired high surrogate escape', () =>
      reject('{"w\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'unpaired surrogate'));
    it('rejects a key with an unpaired low surrogate escape', () =>
      reject('{"w\\udc00":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'unpaired surrogate'));
    it('rejects a high surrogate followed by a non-surrogate escape', () =>
      reject('{"w\\ud800\\u0041":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'unpaired surrogate'));
    it('rejects an unpaired surrogate in a metadata value', () => reject('{"__metadata__":{"format":"\\udfff"}}', 0, 'unpaired surrogate'));
    it('accepts an escaped surrogate pair and decodes it', () => {
      const { tensors } = parseSafetensors(craft('{"w\\ud83d\\ude00":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
      expect([...tensors.keys()]).toEqual(['w😀']);
    });
    it('rejects a raw control character in a string', () =>
      reject('{"w\n":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'control character'));
    it('rejects an invalid escape', () => reject('{"w\\x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'invalid escape'));
  });

  describe('structure', () => {
    it('stops at serde_json recursion limit (127 levels) before going deeper', () => {
      const deep = `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${'['.repeat(200)}${']'.repeat(200)}}}`;
      reject(deep, 4, 'nested more than 127 levels');
    });
    it('accepts unknown entry fields nested within the limit (serde ignores unknown fields)', () => {
      const ok = `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${'['.repeat(100)}${']'.repeat(100)}}}`;
      expect(parseSafetensors(craft(ok, 4)).tensors.size).toBe(1);
    });
    it('a 20 MB header of brackets is refused at the limit, not parsed', () => {
      const text = `{"w":${'['.repeat(20_000_000)}`;
      reject(text, 0, 'nested more than 127 levels');
    });
    it('rejects a field repeated inside one entry (serde: duplicate field)', () =>
      reject('{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, 'appears twice', 'dtype'));
    it('rejects a trailing comma', () => reject('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],}}', 4, 'expected a string key'));
    it('rejects trailing characters after the object', () => reject('{} x', 0, 'trailing characters'));
    it('accepts trailing spaces (the writer pads with them)', () => expect(parseSafetensors(craft('{}      ', 0)).tensors.size).toBe(0));
    it('data_offsets must be exactly two integers', () => reject(F32_ONE('[1]', '[0]'), 4, 'data_offsets must be', 'w'));
    it('a key named __proto__ is an ordinary tensor name', () => {
      const { tensors } = parseSafetensors(craft('{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
      expect([...tensors.keys()]).toEqual(['__proto__']);
    });
  });
});
