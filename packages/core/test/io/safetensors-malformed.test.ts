import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, SafetensorsError, toInt32 } from '../../src/index.js';
import { readSafetensors } from '../../src/io/node.js';
import { craft, entry } from './craft.js';

interface Case {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** The key the error must name, or undefined for file-level errors. */
  readonly key: string | undefined;
  /** A fragment the message must contain (the rule that was broken). */
  readonly says: string;
}

const f32 = (shape: unknown[], offsets: unknown[]) => entry('F32', shape, offsets);
const i64Bytes = (values: bigint[]) => new Uint8Array(new BigInt64Array(values).buffer);

const cases: Case[] = [
  { name: 'empty file', bytes: new Uint8Array(0), key: undefined, says: 'too short' },
  { name: 'truncated header length', bytes: new Uint8Array([16, 0, 0]), key: undefined, says: 'too short' },
  { name: 'header length larger than the file', bytes: craft('{}', 0, 64n), key: undefined, says: 'exceeds the 2 bytes' },
  { name: 'oversized header length', bytes: craft('{}', 0, 100_000_001n), key: undefined, says: '100000000-byte limit' },
  { name: 'header length near 2^64', bytes: craft('{}', 0, 2n ** 64n - 1n), key: undefined, says: 'limit' },
  { name: 'truncated header (JSON cut short)', bytes: craft('{"a":{"dtype":"F32","sha'), key: undefined, says: 'not valid JSON' },
  { name: 'invalid JSON', bytes: craft('{"a": nope}'), key: undefined, says: 'not valid JSON' },
  { name: 'header is a JSON array', bytes: craft('[1, 2]'), key: undefined, says: 'not a JSON object' },
  { name: 'header starts with whitespace', bytes: craft(' {}'), key: undefined, says: 'not a JSON object' },
  { name: 'header is not UTF-8', bytes: craft(new Uint8Array([0x7b, 0xff, 0x7d])), key: undefined, says: 'not valid UTF-8' },
  { name: 'unknown dtype', bytes: craft({ w: entry('F128', [1], [0, 16]) }, 16), key: 'w', says: 'unknown dtype "F128"' },
  { name: 'dtype not a string', bytes: craft({ w: entry(7 as never, [1], [0, 4]) }, 4), key: 'w', says: 'dtype must be a string' },
  { name: 'negative shape', bytes: craft({ w: f32([-1, 2], [0, 8]) }, 8), key: 'w', says: 'non-negative integers' },
  { name: 'non-integer shape', bytes: craft({ w: f32([1.5, 2], [0, 12]) }, 12), key: 'w', says: 'non-negative integers' },
  { name: 'shape not an array', bytes: craft({ w: f32('2' as never, [0, 8]) }, 8), key: 'w', says: 'non-negative integers' },
  { name: 'missing data_offsets', bytes: craft({ w: { dtype: 'F32', shape: [1] } }, 4), key: 'w', says: 'data_offsets must be' },
  { name: 'three data_offsets', bytes: craft({ w: f32([1], [0, 4, 8]) }, 4), key: 'w', says: 'data_offsets must be' },
  { name: 'negative data_offsets', bytes: craft({ w: f32([1], [-4, 0]) }, 4), key: 'w', says: 'data_offsets must be' },
  { name: 'offsets reversed', bytes: craft({ w: f32([0], [8, 4]) }, 8), key: 'w', says: 'reversed' },
  { name: 'offsets out of range', bytes: craft({ w: f32([4], [0, 16]) }, 8), key: 'w', says: 'run past the 8-byte data section' },
  { name: 'size does not match the shape', bytes: craft({ w: f32([3], [0, 8]) }, 8), key: 'w', says: 'needs 12 bytes' },
  {
    name: 'overlapping offsets',
    bytes: craft({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, 12),
    key: 'b',
    says: "overlap 'a'",
  },
  { name: 'gap before the first tensor', bytes: craft({ w: f32([1], [4, 8]) }, 8), key: 'w', says: 'gap of 4 bytes' },
  { name: 'gap between tensors', bytes: craft({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, 12), key: 'b', says: 'gap of 4 bytes' },
  { name: 'trailing bytes after the last tensor', bytes: craft({ w: f32([1], [0, 4]) }, 9), key: 'w', says: '5 trailing bytes' },
  { name: 'data but no tensors', bytes: craft({}, 4), key: undefined, says: '4 trailing bytes' },
  {
    name: 'duplicate key',
    bytes: craft('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),
    key: 'w',
    says: 'appears twice',
  },
  { name: 'metadata not an object', bytes: craft({ __metadata__: ['pt'] }), key: '__metadata__', says: 'must be an object' },
  {
    name: 'metadata value not a string',
    bytes: craft({ __metadata__: { format: 1 } }),
    key: '__metadata__',
    says: '"format" must be a string',
  },
  { name: 'entry not an object', bytes: craft({ w: 3 }), key: 'w', says: 'entry must be an object' },
  { name: 'shape overflows', bytes: craft({ w: f32([2 ** 40, 2 ** 40], [0, 0]) }), key: 'w', says: 'too large' },
  { name: 'sub-byte dtype with an odd count', bytes: craft({ w: entry('F4', [3], [0, 2]) }, 2), key: 'w', says: 'whole number of bytes' },
  { name: 'unsupported dtype BOOL', bytes: craft({ w: entry('BOOL', [2], [0, 2]) }, 2), key: 'w', says: 'dtype BOOL is not supported' },
  { name: 'unsupported dtype F64', bytes: craft({ w: entry('F64', [1], [0, 8]) }, 8), key: 'w', says: 'dtype F64 is not supported' },
];

let folder: string;
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dorajs-malformed-'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

function expectNamed(error: unknown, file: string, c: Case): void {
  expect(error).toBeInstanceOf(SafetensorsError);
  const e = error as SafetensorsError;
  expect(e.file).toBe(file);
  expect(e.key).toBe(c.key);
  expect(e.message).toContain(file);
  if (c.key !== undefined) expect(e.message).toContain(`[${c.key}]`);
  expect(e.message).toContain(c.says);
}

describe('malformed safetensors', () => {
  it('has at least 20 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases)('$name: parsing bytes raises a SafetensorsError naming file and key', (c) => {
    let error: unknown;
    try {
      parseSafetensors(c.bytes, 'bad.safetensors');
    } catch (e) {
      error = e;
    }
    expectNamed(error, 'bad.safetensors', c);
  });

  it.each(cases)('$name: reading the file raises a SafetensorsError naming file and key', async (c) => {
    const path = join(folder, `${c.name.replace(/\W+/g, '-')}.safetensors`);
    await writeFile(path, c.bytes);
    const error = await readSafetensors(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectNamed(error, path, c);
  });

  it('I64 values outside int32 raise a SafetensorsError naming the key and the value', () => {
    const bytes = craft({ 'input.ids': entry('I64', [2], [0, 16]) }, i64Bytes([3n, 2n ** 31n]));
    const { tensors } = parseSafetensors(bytes, 'ids.safetensors');
    const ids = tensors.get('input.ids')!;
    expect(() => toInt32(ids, { file: 'ids.safetensors', key: 'input.ids' })).toThrowError(SafetensorsError);
    expect(() => toInt32(ids, { file: 'ids.safetensors', key: 'input.ids' })).toThrowError(
      /ids\.safetensors \[input\.ids\]: I64 value 2147483648 at index 1 does not fit in int32/,
    );
  });

  it('does not mistake braces and commas inside strings for structure when looking for duplicates', () => {
    const header = '{"__metadata__":{"note":"a,\\"w\\":{,}"},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
    const { tensors, metadata } = parseSafetensors(craft(header, 1), 'ok.safetensors');
    expect(metadata).toEqual({ note: 'a,"w":{,}' });
    expect([...tensors.keys()]).toEqual(['w']);
  });
});
