/**
 * fast-check properties, in process: what must hold for every value, not only for mutants of fixtures.
 * (The worker-run fuzz in fuzz.test.ts draws 1 in 8 of its inputs from the same arbitraries.)
 */
import { IdsJsonReader } from '@dorajs/cli';
import { type HostTensor, parseSafetensors, preview, quoted, serializeSafetensors } from '@dorajs/core';
import { configFromJsonText, configToJsonText, setPeftWarningHandler } from '@dorajs/peft';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { adapterConfigArbitrary, safetensorsArbitrary } from '../src/targets.js';

const SEED = 20261207;
const bytesOf = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

beforeAll(() => {
  setPeftWarningHandler(() => {});
});

describe('safetensors', () => {
  it('serialize → parse → serialize gives the same bytes for any tensors, keys and metadata', () => {
    fc.assert(
      fc.property(safetensorsArbitrary, (file) => {
        const parsed = parseSafetensors(file);
        const again = serializeSafetensors(parsed.tensors, parsed.metadata);
        const reparsed = parseSafetensors(again);
        for (const [key, t] of parsed.tensors) {
          const u = reparsed.tensors.get(key) as HostTensor;
          expect(u.dtype).toBe(t.dtype);
          expect(u.shape).toEqual(t.shape);
          expect(Buffer.compare(bytesOf(u.data), bytesOf(t.data))).toBe(0);
        }
        expect(Buffer.compare(serializeSafetensors(reparsed.tensors, reparsed.metadata), again)).toBe(0);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('ids files', () => {
  const rows = fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 })).chain(([seq, batch]) =>
    fc.array(fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: seq, maxLength: seq }), {
      minLength: batch,
      maxLength: batch,
    }),
  );
  const cuts = fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 40 });

  const read = (bytes: Uint8Array, sizes: readonly number[]) => {
    const reader = new IdsJsonReader('ids.json');
    let at = 0;
    for (const n of sizes) {
      if (at >= bytes.length) break;
      reader.push(bytes.subarray(at, at + n));
      at += n;
    }
    reader.push(bytes.subarray(at));
    return reader.end();
  };

  it('reads back any rectangular int32 ids, however the bytes are chunked and spaced', () => {
    fc.assert(
      fc.property(rows, cuts, fc.constantFrom(undefined, 1, '\t', ' \r\n '), (ids, sizes, space) => {
        const bytes = new TextEncoder().encode(JSON.stringify(ids, null, space));
        const host = read(bytes, sizes);
        expect(host.shape).toEqual([ids.length, ids[0]!.length]);
        expect(Buffer.compare(bytesOf(host.data), bytesOf(Int32Array.from(ids.flat())))).toBe(0);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('gives the same verdict and message for any bytes, whole or chunked', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 40 }),
          fc.json().map((t) => new TextEncoder().encode(t)),
        ),
        cuts,
        (bytes, sizes) => {
          const outcome = (f: () => HostTensor) => {
            try {
              const h = f();
              return `ok ${h.shape} ${[...(h.data as Int32Array)]}`;
            } catch (e) {
              return (e as Error).message;
            }
          };
          expect(outcome(() => read(bytes, sizes))).toBe(outcome(() => read(bytes, [])));
        },
      ),
      { seed: SEED, numRuns: 1000 },
    );
  });
});

describe('adapter_config.json', () => {
  it('any config it accepts is written back and read again to the same text', () => {
    fc.assert(
      fc.property(adapterConfigArbitrary, (bytes) => {
        let text: string;
        try {
          text = configToJsonText(configFromJsonText(new TextDecoder().decode(bytes)));
        } catch (e) {
          expect((e as Error).name).toMatch(/Error$/);
          return;
        }
        expect(configToJsonText(configFromJsonText(text))).toBe(text);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('error previews', () => {
  it('quoted() and preview() of any value are one short line', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.jsonValue()), (value) => {
        for (const text of [quoted(value), preview(value)]) {
          expect(text).not.toMatch(/[\n\r\u2028\u2029]/);
          expect(text.length).toBeLessThanOrEqual(90);
        }
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});
