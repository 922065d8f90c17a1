/**
 * Bounded previews of untrusted values for error messages. `JSON.stringify` or `String()` of a value read
 * from a stranger's file can recurse thousands of levels deep (a stack overflow while *building* the error)
 * or print megabytes; a preview walks at most a few levels and a few items, iteratively bounded, and is
 * always short.
 */

const MAX_LENGTH = 80;
const MAX_DEPTH = 2;
const MAX_ITEMS = 4;

/** A short, JSON-like rendering of `value` (at most ~80 characters), safe for any input. */
export function preview(value: unknown, maxLength = MAX_LENGTH): string {
  const text = render(value, MAX_DEPTH);
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 1)}…`;
}

function render(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > MAX_LENGTH ? `${value.slice(0, MAX_LENGTH)}…` : value);
    case 'number':
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'symbol':
    case 'function':
      return typeof value;
  }
  if (value === null) return 'null';
  const custom = (value as { preview?: unknown }).preview;
  if (typeof custom === 'string') return custom.slice(0, MAX_LENGTH);
  if (Array.isArray(value)) {
    if (depth === 0) return value.length === 0 ? '[]' : '[…]';
    const items: string[] = [];
    for (let i = 0; i < value.length && i < MAX_ITEMS; i++) items.push(render(value[i], depth - 1));
    if (value.length > MAX_ITEMS) items.push(`… ${value.length - MAX_ITEMS} more`);
    return `[${items.join(', ')}]`;
  }
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as { length?: number }).length ?? value.byteLength})`;
  if (depth === 0) return '{…}';
  const items: string[] = [];
  let n = 0;
  // for-in stops early: Object.keys of a million-key object would allocate them all.
  for (const key in value as object) {
    if (!Object.hasOwn(value as object, key)) continue;
    if (n++ === MAX_ITEMS) {
      items.push('…');
      break;
    }
    items.push(
      `${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)}: ${render((value as Record<string, unknown>)[key], depth - 1)}`,
    );
  }
  return `{${items.join(', ')}}`;
}

/**
 * A name-like value in single quotes (`'IA3'`, clipped, control characters escaped so the message stays
 * on one line), or the preview of anything else.
 */
export function quoted(value: unknown): string {
  if (typeof value !== 'string') return preview(value);
  const clipped = value.length > MAX_LENGTH ? `${value.slice(0, MAX_LENGTH)}…` : value;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this escapes
  return `'${clipped.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}
