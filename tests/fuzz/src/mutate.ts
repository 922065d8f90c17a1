/**
 * Mutation operators over bytes. They aim at what breaks parsers: JSON-significant bytes, numbers at
 * and past every limit, deep nesting, truncation, duplicated and spliced ranges, and (for safetensors)
 * a header length that is kept consistent with the mutated header, or not.
 */
import type { Rng } from './rng.js';

const JSON_BYTES = [...'{}[]",:\\-+.eE0123456789 \t\n\r'].map((c) => c.charCodeAt(0));

/** Replacements for a number or a string token: limits, float spellings, escapes, surrogates. */
const TOKENS = [
  '0',
  '-0',
  '1',
  '-1',
  '4.0',
  '1E0',
  '0e0',
  '1e308',
  '1e309',
  '-1e400',
  '2147483647',
  '2147483648',
  '-2147483649',
  '4294967296',
  '9007199254740991',
  '9007199254740993',
  '18446744073709551615',
  '18446744073709551616',
  '99999999999999999999999999999999',
  '1e12',
  '200000',
  'NaN',
  'Infinity',
  'null',
  'true',
  'false',
  '""',
  '"\\ud800"',
  '"\\udc00\\ud800"',
  '"\\u0000"',
  '"__proto__"',
  '"__metadata__"',
  '"constructor"',
  '[]',
  '{}',
  '[0,0]',
  '[[1,2],[3]]',
  '"(x+x+)+y"',
  '"(a|a)*$"',
  '"(?=x)"',
  '"\\\\1"',
  '"F32"',
  '"BF16"',
  '"I64"',
  '"F8_E4M3"',
  '"BOOL"',
  '"F4"',
  '"LORA"',
  '"llama"',
  '"gpt2"',
];

export function mutateBytes(rng: Rng, input: Uint8Array, rounds = 1 + rng.int(4)): Uint8Array {
  let bytes = input;
  for (let r = 0; r < rounds; r++) bytes = mutateOnce(rng, bytes);
  return bytes;
}

function mutateOnce(rng: Rng, bytes: Uint8Array): Uint8Array {
  const n = bytes.length;
  const at = rng.int(n + 1);
  switch (rng.int(11)) {
    case 0: {
      // flip one bit
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[Math.min(at, n - 1)]! ^= 1 << rng.int(8);
      return out;
    }
    case 1: {
      // a JSON-significant byte in place of another
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[Math.min(at, n - 1)] = rng.pick(JSON_BYTES);
      return out;
    }
    case 2:
      // delete a range
      return concat(bytes.subarray(0, at), bytes.subarray(Math.min(n, at + 1 + rng.int(16))));
    case 3:
      // truncate
      return bytes.slice(0, at);
    case 4: {
      // duplicate a range
      const end = Math.min(n, at + 1 + rng.int(64));
      return concat(bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end));
    }
    case 5:
      // insert a token (a limit, a float spelling, a surrogate escape, a pattern)
      return concat(bytes.subarray(0, at), ascii(rng.pick(TOKENS)), bytes.subarray(at));
    case 6:
      // replace the token under `at` (a run of digits, or a string) with another
      return replaceToken(rng, bytes, at);
    case 7: {
      // a run of brackets or digits
      const c = rng.pick(['[', '{', '9', ']', '"', '{"a":', '[0,']);
      return concat(bytes.subarray(0, at), ascii(c.repeat(1 + rng.int(rng.chance(0.1) ? 5000 : 200))), bytes.subarray(at));
    }
    case 8: {
      // random bytes
      const noise = new Uint8Array(1 + rng.int(8));
      for (let i = 0; i < noise.length; i++) noise[i] = rng.int(256);
      return concat(bytes.subarray(0, at), noise, bytes.subarray(Math.min(n, at + rng.int(4))));
    }
    case 9: {
      // swap two ranges' contents (moves keys and values around)
      if (n < 4) return bytes;
      const len = 1 + rng.int(Math.min(32, n >> 1));
      const a = rng.int(n - len);
      const b = rng.int(n - len);
      const out = bytes.slice();
      out.set(bytes.subarray(a, a + len), b);
      out.set(bytes.subarray(b, b + len), a);
      return out;
    }
    default: {
      // an ASCII byte made non-ASCII (invalid UTF-8, or a valid multi-byte sequence)
      if (n === 0) return bytes;
      // (Text formats get invalid UTF-8 rarely: the reader refuses it before any parser sees it.)
      const seq = rng.chance(0.15)
        ? rng.pick([[0xff], [0xed, 0xa0, 0x80], [0x80]])
        : rng.pick([
            [0xc3, 0xa9],
            [0xf0, 0x9f, 0x98, 0x80],
            [0xe2, 0x80, 0xa8],
          ]);
      return concat(bytes.subarray(0, at), Uint8Array.from(seq), bytes.subarray(at));
    }
  }
}

function replaceToken(rng: Rng, bytes: Uint8Array, at: number): Uint8Array {
  const isDigit = (c: number | undefined) => c !== undefined && ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e);
  // find the next number or string at or after `at`
  let start = at;
  while (start < bytes.length && !isDigit(bytes[start]) && bytes[start] !== 0x22) start++;
  if (start >= bytes.length) return bytes;
  let end = start + 1;
  if (bytes[start] === 0x22) {
    while (end < bytes.length && bytes[end] !== 0x22) end += bytes[end] === 0x5c ? 2 : 1;
    end = Math.min(bytes.length, end + 1);
  } else {
    while (end < bytes.length && isDigit(bytes[end])) end++;
  }
  return concat(bytes.subarray(0, start), ascii(rng.pick(TOKENS)), bytes.subarray(end));
}

/**
 * A safetensors file mutated mostly inside its JSON header. With probability `fixLength` the 8-byte
 * length prefix is rewritten to the mutated header's length (otherwise the length is left as it was, or
 * itself mutated), so most mutants get past the first check.
 */
export function mutateSafetensors(rng: Rng, file: Uint8Array): Uint8Array {
  if (file.length < 8 || rng.chance(0.1)) return mutateBytes(rng, file);
  const declared = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  const headerEnd = Math.min(file.length, 8 + declared);
  const header = file.subarray(8, headerEnd);
  const data = file.subarray(headerEnd);
  const mutatedHeader = rng.chance(0.9) ? mutateBytes(rng, header) : header;
  const mutatedData = rng.chance(0.1) ? mutateBytes(rng, data) : data;
  const prefix = new Uint8Array(8);
  const view = new DataView(prefix.buffer);
  const roll = rng.int(10);
  if (roll < 8) view.setBigUint64(0, BigInt(mutatedHeader.length), true);
  else if (roll === 8) view.setBigUint64(0, BigInt(declared), true);
  else
    view.setBigUint64(
      0,
      rng.pick([0n, 1n, 7n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n, 100_000_001n, BigInt(mutatedHeader.length + 1)]),
      true,
    );
  return concat(prefix, mutatedHeader, mutatedData);
}

export function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
