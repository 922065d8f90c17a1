/**
 * JSON text exactly as Python's `json.dumps(obj, indent=2, sort_keys=True)` writes it (PEFT's
 * adapter_config.json): two-space indents, `": "` and `","` separators, `{}`/`[]` for empty containers,
 * non-ASCII escaped, and floats in Python's repr (`0.0`, `1e-05`) where the field is a Python float.
 */

/** Marks a number that Python holds as a float, so it is written `0.0` rather than `0`. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type PyJsonValue = null | boolean | number | string | PyFloat | readonly PyJsonValue[] | { readonly [key: string]: PyJsonValue };

export function pythonJsonDumps(value: PyJsonValue, indent = 2): string {
  return write(value, indent, 0);
}

function write(v: PyJsonValue, indent: number, depth: number): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : jsonFloat(v);
  if (typeof v === 'string') return pythonString(v);
  if (v instanceof PyFloat) return jsonFloat(v.value);
  const pad = ' '.repeat(indent * (depth + 1));
  const close = ' '.repeat(indent * depth);
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return `[\n${v.map((x) => pad + write(x as PyJsonValue, indent, depth + 1)).join(',\n')}\n${close}]`;
  }
  const obj = v as { readonly [key: string]: PyJsonValue };
  // Python sorts str keys by code point, which is JS's default string comparison for the BMP.
  const keys = Object.keys(obj).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${pad}${pythonString(k)}: ${write(obj[k]!, indent, depth + 1)}`).join(',\n')}\n${close}}`;
}

/**
 * A float as JSON text: Python's repr, except that an infinity is written `1e999` / `-1e999` rather than
 * Python's `Infinity`, which JSON.parse (and so dorajs) cannot read back. Python reads `1e999` as inf, so
 * both sides still get the same value. (An infinity only arrives from a file that spelled it e.g. `1e400`.)
 */
function jsonFloat(x: number): string {
  if (x === Number.POSITIVE_INFINITY) return '1e999';
  if (x === Number.NEGATIVE_INFINITY) return '-1e999';
  return pythonFloatRepr(x);
}

/** Python's float repr: shortest round-trip digits, fixed notation for 1e-4 ≤ |x| < 1e16, else `1e-05` style. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expText] = x.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  const sign = negative ? '-' : '';
  if (exp >= -4 && exp < 16) {
    let text: string;
    if (exp < 0) text = `0.${'0'.repeat(-exp - 1)}${digits}`;
    else if (digits.length <= exp + 1) text = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
    else text = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    return sign + text;
  }
  const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
  const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
  return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
}

function pythonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xffff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c > 0xffff) {
      // ensure_ascii writes astral characters as a surrogate pair
      const v = c - 0x10000;
      out += `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
    } else out += ch;
  }
  return `${out}"`;
}
