/** Ids are validated on the host before any kernel indexes a table with them. */
import { tensor } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { TokenIdsError, tokenIds, validateTokenIds } from '../src/index.js';
import { cpu, fixtureTensors, thrown as error } from './helpers.js';

const backend = cpu();
const opts = { vocabSize: 10, backend, source: 'ids.json' };

describe('tokenIds', () => {
  it('uploads rectangular in-vocabulary ids as int32 [batch, seq]', async () => {
    const t = tokenIds(
      [
        [0, 9, 3],
        [1, 1, 2],
      ],
      opts,
    );
    expect(t.dtype).toBe('int32');
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(await t.data())).toEqual([0, 9, 3, 1, 1, 2]);
    t.dispose();
  });

  it('reads I64 ids from a safetensors tensor', async () => {
    const host = (await fixtureTensors('llama')).get('input.ids')!;
    const t = tokenIds(host, { vocabSize: 96, backend });
    expect(t.shape).toEqual([2, 9]);
    expect(Array.from(await t.data())).toEqual(Array.from(host.data as BigInt64Array, Number));
    t.dispose();
  });

  it.each([
    [[[1, 10]], 'ids.json: id 10 at [0, 1] is outside the vocabulary (vocab_size 10)'],
    [
      [
        [1, 2],
        [3, -1],
      ],
      'ids.json: id -1 at [1, 1] is outside the vocabulary (vocab_size 10)',
    ],
    [[[1, 2], [3]], 'ids.json: ids are not rectangular: row 0 has 2 ids, row 1 has 1'],
    [[[1, 2.5]], 'ids.json: id 2.5 at [0, 1] is not an integer'],
    [[['1']], 'ids.json: id "1" at [0, 0] is not an integer'],
    [[], 'ids.json: ids must be a non-empty [[…], …] array'],
    [[[]], 'ids.json: ids must be a non-empty [[…], …] array'],
    [[1, 2], 'ids.json: ids must be a non-empty [[…], …] array'],
    [[[1], 2], 'ids.json: row 1 is not an array'],
  ])('refuses %j', (ids, message) => {
    const e = error(() => tokenIds(ids as number[][], opts));
    expect(e).toBeInstanceOf(TokenIdsError);
    expect(e.message).toBe(message);
    expect(backend.liveBuffers()).toBe(0);
  });

  it('refuses float and wrongly shaped host tensors, and I64 beyond int32', () => {
    expect(error(() => tokenIds({ dtype: 'F32', shape: [1, 2], data: new Float32Array(2) }, opts)).message).toMatch(
      /must be an integer tensor/,
    );
    expect(error(() => tokenIds({ dtype: 'I32', shape: [2], data: new Int32Array(2) }, opts)).message).toMatch(/non-empty \[batch, seq\]/);
    const big = { dtype: 'I64' as const, shape: [1, 1], data: new BigInt64Array([2n ** 40n]) };
    expect(error(() => tokenIds(big, opts)).message).toBe('ids.json: id 1099511627776 at [0, 0] does not fit in int32');
  });
});

describe('validateTokenIds', () => {
  it('checks a tensor already on the backend', async () => {
    const ok = tensor(new Int32Array([1, 2, 3, 4]), [2, 2], { backend });
    await expect(validateTokenIds(ok, 10)).resolves.toBeUndefined();
    await expect(validateTokenIds(ok, 4, 'batch 3')).rejects.toThrow('batch 3: id 4 at [1, 1] is outside the vocabulary (vocab_size 4)');
    ok.dispose();
  });
});
