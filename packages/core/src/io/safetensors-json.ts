/**
 * The JSON grammar of a safetensors header, as the Rust reference (serde_json into `usize`, `String` and
 * `(usize, usize)`) reads it — stricter than `JSON.parse`:
 * - numbers meant as sizes and offsets must be unsigned integer literals: `4.0`, `1E0`, `0e0` and `-0`
 *   are floats to serde_json and rejected; such literals come back as `JsonNonInteger` values so the
 *   field check can name them;
 * - strings must be well-formed Unicode: an escaped unpaired surrogate (`"\ud800"`) is an error;
 * - nesting stops at serde_json's recursion limit (127 levels), checked before going deeper;
 * - a key repeated in one object is an error (serde rejects repeated struct fields; a repeated tensor
 *   name would hide a tensor).
 * Objects are built without a prototype, so a key named `__proto__` is just a key. Iterative over
 * siblings and recursive only as deep as the limit allows.
 */

/** serde_json's default recursion limit: 128 levels budgeted, the 128th refused. */
export const MAX_HEADER_DEPTH = 127;

/** A JSON number that is not an unsigned integer literal (or does not fit a safe integer). */
export class JsonNonInteger {
  constructor(readonly preview: string) {}
}

/** A grammar violation; `key` is the repeated key for duplicates. */
export class HeaderJsonError extends Error {
  constructor(
    message: string,
    readonly key?: string,
  ) {
    super(message);
  }
}

const UNSIGNED_INTEGER = /^(0|[1-9][0-9]*)$/;

export function parseHeaderJson(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new HeaderJsonError(`header is not valid JSON: ${what} at character ${i}`);
  };
  const skipSpace = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const expect = (c: number, what: string) => {
    skipSpace();
    if (text.charCodeAt(i) !== c) fail(`expected ${what}`);
    i++;
  };

  const parseString = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text.charCodeAt(i + 1);
      i += 2;
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          const unit = hex4();
          if (unit >= 0xdc00 && unit <= 0xdfff) fail('unpaired surrogate escape');
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (text.charCodeAt(i) !== 0x5c || text.charCodeAt(i + 1) !== 0x75) fail('unpaired surrogate escape');
            i += 2;
            const low = hex4();
            if (low < 0xdc00 || low > 0xdfff) fail('unpaired surrogate escape');
            out += String.fromCharCode(unit, low);
          } else {
            out += String.fromCharCode(unit);
          }
          break;
        }
        default:
          i -= 1;
          fail('invalid escape');
      }
      start = i;
    }
  };

  const hex4 = (): number => {
    const digits = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) fail('invalid \\u escape');
    i += 4;
    return Number.parseInt(digits, 16);
  };

  const parseNumber = (): number | JsonNonInteger => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const digitsFrom = i;
    while (isDigit(text.charCodeAt(i))) i++;
    if (i === digitsFrom) fail('invalid number');
    if (text.charCodeAt(digitsFrom) === 0x30 && i - digitsFrom > 1) fail('leading zero in number');
    if (text.charCodeAt(i) === 0x2e) {
      i++;
      const from = i;
      while (isDigit(text.charCodeAt(i))) i++;
      if (i === from) fail('invalid number');
    }
    if (text.charCodeAt(i) === 0x65 || text.charCodeAt(i) === 0x45) {
      i++;
      if (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d) i++;
      const from = i;
      while (isDigit(text.charCodeAt(i))) i++;
      if (i === from) fail('invalid number');
    }
    const literal = text.slice(start, i);
    if (UNSIGNED_INTEGER.test(literal)) {
      const n = Number(literal);
      if (Number.isSafeInteger(n)) return n;
    }
    return new JsonNonInteger(literal.length > 40 ? `${literal.slice(0, 40)}…` : literal);
  };

  const parseValue = (depth: number): unknown => {
    skipSpace();
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      if (depth >= MAX_HEADER_DEPTH) fail(`nested more than ${MAX_HEADER_DEPTH} levels deep`);
      return c === 0x7b ? parseObject(depth + 1) : parseArray(depth + 1);
    }
    if (c === 0x22) return parseString();
    if (c === 0x2d || isDigit(c)) return parseNumber();
    for (const [word, value] of LITERALS) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return value;
      }
    }
    return fail(i >= text.length ? 'unexpected end' : 'unexpected character');
  };

  const parseArray = (depth: number): unknown[] => {
    i++;
    const out: unknown[] = [];
    skipSpace();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      return out;
    }
    for (;;) {
      out.push(parseValue(depth));
      skipSpace();
      const c = text.charCodeAt(i++);
      if (c === 0x5d) return out;
      if (c !== 0x2c) fail("expected ',' or ']'");
    }
  };

  const parseObject = (depth: number): Record<string, unknown> => {
    i++;
    const out = Object.create(null) as Record<string, unknown>;
    skipSpace();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return out;
    }
    for (;;) {
      skipSpace();
      if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
      const key = parseString();
      if (Object.hasOwn(out, key)) throw new HeaderJsonError('key appears twice in the same object', key);
      expect(0x3a, "':'");
      out[key] = parseValue(depth);
      skipSpace();
      const c = text.charCodeAt(i++);
      if (c === 0x7d) return out;
      if (c !== 0x2c) fail("expected ',' or '}'");
    }
  };

  const value = parseValue(0);
  skipSpace();
  if (i < text.length) fail('trailing characters after the JSON value');
  return value;
}

const LITERALS: readonly (readonly [string, unknown])[] = [
  ['true', true],
  ['false', false],
  ['null', null],
];

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
