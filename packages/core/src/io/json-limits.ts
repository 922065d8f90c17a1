/**
 * Limits for JSON read from untrusted files (config.json, adapter_config.json, ids files, shard indexes).
 * `JSON.parse` itself copes with deep nesting, but everything after it — validation, error messages,
 * `JSON.stringify` — recurses, and 80 MB of `[` costs gigabytes before any check runs. So the depth is
 * checked first, by a linear scan that allocates nothing.
 */

/** Deeper than any real config (Python's json module stops near 1000; HF configs nest 3–4 levels). */
export const MAX_JSON_DEPTH = 64;

/** Offset of the first `[` or `{` nested deeper than `maxDepth` (outside strings), or -1. */
export function findTooDeep(text: string, maxDepth: number = MAX_JSON_DEPTH): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return -1;
}

/**
 * `JSON.parse(text)` once its nesting is known to be at most `maxDepth`. `fail` builds the caller's typed
 * error (it names the file) from a one-line reason.
 */
export function parseJsonBounded(
  text: string,
  fail: (reason: string, cause?: unknown) => Error,
  maxDepth: number = MAX_JSON_DEPTH,
): unknown {
  const deep = findTooDeep(text, maxDepth);
  if (deep >= 0) throw fail(`JSON nested more than ${maxDepth} levels deep (at character ${deep})`);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw fail(`not valid JSON (${oneLine((error as Error).message.slice(0, 200))})`, error);
  }
}

/** V8's JSON.parse messages quote the text around the error, newlines and control characters included. */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this escapes
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
