/**
 * JSON ids files are streamed: memory follows the ids accepted, never the file, and the read stops at the
 * first byte that cannot belong to a valid ids file.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IdsJsonReader, parseIdsJson, readIdsFile } from '../src/ids.js';
import { tempDir } from './helpers.js';

const ascii = (text: string) => new TextEncoder().encode(text);

describe('IdsJsonReader', () => {
  it('reads [[…], …] and a flat […] as int32 [batch, seq], with a byte order mark and any spacing', () => {
    const a = parseIdsJson(ascii(' [ [1, 2,3] ,\n[4,5,6]\t]\n'), 'ids.json');
    expect(a.dtype).toBe('I32');
    expect(a.shape).toEqual([2, 3]);
    expect([...(a.data as Int32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(parseIdsJson(ascii('[7, 8]'), 'ids.json').shape).toEqual([1, 2]);
    const bom = parseIdsJson(Uint8Array.of(0xef, 0xbb, 0xbf, ...ascii('[[9]]')), 'ids.json');
    expect([...(bom.data as Int32Array)]).toEqual([9]);
    // What JSON.parse + Number.isInteger accepted before stays accepted.
    expect([...(parseIdsJson(ascii('[[2147483647, -2147483648, -0, 1.0, 1e2, 20E-1]]'), 'i').data as Int32Array)]).toEqual([
      2147483647, -2147483648, 0, 1, 100, 2,
    ]);
  });

  it.each([
    ['[[1,2,3],[4,5]]', 'at byte 13: ids are not rectangular: row 0 has 3 ids, row 1 has 2'],
    ['[[1,2],[3,4,5]]', 'at byte 12: ids are not rectangular: row 0 has 2 ids, row 1 has more'],
    ['[[1.5]]', 'at byte 2: id 1.5 at [0, 0] is not an integer'],
    ['[[2147483648]]', 'at byte 2: id 2147483648 at [0, 0] does not fit in int32'],
    ['[["1"]]', `at byte 2: expected an integer id at [0, 0], found '"'`],
    ['[[01]]', "at byte 2: '01' at [0, 0] is not a JSON number"],
    ['[[1],2]', "at byte 5: expected '[' (every row is an array), found '2'"],
    ['[1,[2]]', "at byte 3: expected an integer id at [0, 1], found '['"],
    ['[[[1]]]', 'at byte 2: nested more than 2 levels deep (expected [[…], …])'],
    ['[[]]', 'at byte 2: row 0 is empty'],
    ['[]', 'at byte 1: no ids (expected a non-empty [[…], …] array)'],
    ['[[1]] x', "at byte 6: expected nothing after the closing bracket, found 'x'"],
    ['[[1]', 'at byte 4: unexpected end of file (the outer array is not closed)'],
    ['{"ids": [[1]]}', "at byte 0: expected '[', found '{'"],
  ])('%s is refused naming the byte and the reason', (text, reason) => {
    expect(() => parseIdsJson(ascii(text), 'ids.json')).toThrow(`ids.json: invalid ids JSON ${reason}`);
  });

  it('stops at the first bad byte: a megabyte-long number or a wrong row costs nothing more', () => {
    const reader = new IdsJsonReader('ids.json');
    reader.push(ascii('[[1'));
    expect(() => reader.push(new Uint8Array(2 ** 20).fill(0x39))).toThrow(/at byte 2: a number longer than 64 characters/);
    const rows = new IdsJsonReader('ids.json');
    rows.push(ascii('[[1,2],[3,4],[5'));
    expect(() => rows.push(ascii(',6,7'))).toThrow(/row 0 has 2 ids, row 2 has more/);
  });

  it('keeps memory to the ids accepted: 64 MiB of whitespace around one id', () => {
    const reader = new IdsJsonReader('ids.json');
    const spaces = new Uint8Array(2 ** 20).fill(0x20);
    const before = process.memoryUsage();
    reader.push(ascii('[['));
    for (let i = 0; i < 64; i++) reader.push(spaces);
    reader.push(ascii('42]]'));
    const host = reader.end();
    const after = process.memoryUsage();
    expect([...(host.data as Int32Array)]).toEqual([42]);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(2 ** 20);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(16 * 2 ** 20);
  });

  it('refuses more than maxIds ids as they arrive', () => {
    const reader = new IdsJsonReader('ids.json', 4);
    expect(() => reader.push(ascii('[[1,2,3,4,5]]'))).toThrow(/at byte 10: more than 4 ids/);
  });
});

describe('readIdsFile (JSON)', () => {
  it('streams a file in chunks into one int32 tensor', async () => {
    const dir = tempDir();
    const path = join(dir, 'ids.json');
    const rows = Array.from({ length: 3 }, (_, b) => Array.from({ length: 40_000 }, (_, s) => (b * 40_000 + s) % 50_257));
    writeFileSync(path, JSON.stringify(rows));
    const ids = await readIdsFile(path);
    expect('shape' in ids && ids.shape).toEqual([3, 40_000]);
    expect(Buffer.compare(Buffer.from((ids as { data: Int32Array }).data.buffer), Buffer.from(Int32Array.from(rows.flat()).buffer))).toBe(
      0,
    );
  });
});
