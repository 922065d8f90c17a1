/**
 * Regular expressions taken from adapter configs — `target_modules` / `exclude_modules` as a string,
 * `layers_pattern`, the keys of `rank_pattern` / `alpha_pattern` — come from strangers on the Hub. A
 * backtracking engine hangs for minutes on `(a+)+$`, so they run on RE2 (`re2js`: linear time, pure
 * JavaScript, browser-safe), loaded on first use: only a config that has a pattern pays for it.
 *
 * PEFT's matching, as Python's `re` does it:
 * - target_modules / exclude_modules: `re.fullmatch(pattern, key)`           → `matches()`
 * - rank_pattern / alpha_pattern keys: `re.match(rf"(.*\.)?({key})$", key)` → `lookingAt()` on that text
 * - layers_pattern: `re.match(rf".*\.{pattern}\.(\d+)\.", key)`, group 1     → `lookingAt()`, `group(1)`
 * A pattern RE2 cannot express (backreferences, lookaround) is a LoraConfigError, never a fallback to a
 * backtracking engine. (RE2's `\d` is ASCII-only where Python's also takes other Unicode digits; module
 * names are ASCII.)
 */
import { LoraConfigError } from '../errors.js';
import type { LoraConfig } from './lora-config.js';

type Engine = typeof import('re2js');
type Compiled = ReturnType<Engine['RE2JS']['compile']>;

/** Longer patterns are refused outright: no real target list comes near this. */
export const MAX_PATTERN_LENGTH = 10_000;

let engine: Engine | undefined;
const compiled = new Map<string, Compiled>();

export interface ConfigPattern {
  readonly field: string;
  readonly text: string;
}

/** The regular expressions a config holds, each as the text Python would compile. */
export function configPatterns(config: LoraConfig): ConfigPattern[] {
  const out: ConfigPattern[] = [];
  if (typeof config.targetModules === 'string' && config.targetModules !== 'all-linear') {
    out.push({ field: 'target_modules', text: config.targetModules });
  }
  if (typeof config.excludeModules === 'string') out.push({ field: 'exclude_modules', text: config.excludeModules });
  for (const key of Object.keys(config.rankPattern)) out.push({ field: `rank_pattern key`, text: suffixPattern(key) });
  for (const key of Object.keys(config.alphaPattern)) out.push({ field: `alpha_pattern key`, text: suffixPattern(key) });
  const layers = config.layersPattern;
  for (const p of layers === null ? [] : typeof layers === 'string' ? [layers] : layers) {
    out.push({ field: 'layers_pattern', text: layerPattern(p) });
  }
  return out;
}

/**
 * Loads the engine if `config` has a pattern and compiles each one, so an inexpressible pattern fails
 * before the model is touched. Every async entry point that targets modules awaits this first.
 */
export async function preparePatterns(config: LoraConfig): Promise<void> {
  const patterns = configPatterns(config);
  if (patterns.length === 0) return;
  engine ??= await import('re2js');
  for (const p of patterns) compile(p.text, p.field);
}

/** `re.fullmatch(pattern, path)`. */
export function fullMatch(pattern: string, path: string, field: string): boolean {
  return compile(pattern, field).matches(path);
}

/** PEFT's `get_pattern_key` test: `re.match(rf"(.*\.)?({key})$", path)`. */
export function keyMatches(key: string, path: string, field: string): boolean {
  return compile(suffixPattern(key), field).matcher(path).lookingAt();
}

/** The layer index `re.match(rf".*\.{pattern}\.(\d+)\.", path)` captures, or null. */
export function layerIndex(pattern: string, path: string): number | null {
  const m = compile(layerPattern(pattern), 'layers_pattern').matcher(path);
  if (!m.lookingAt()) return null;
  const captured = m.group(1) ?? '';
  // PEFT reads group 1 as the index: a pattern with its own capturing group makes Python's int() fail.
  if (!/^\d+$/.test(captured)) {
    throw new LoraConfigError(
      `layers_pattern: '${pattern.slice(0, 80)}' captures '${captured.slice(0, 40)}' as the layer index (write groups as (?:…))`,
    );
  }
  return Number(captured);
}

const suffixPattern = (key: string) => `(.*\\.)?(${key})$`;
const layerPattern = (pattern: string) => `.*\\.${pattern}\\.(\\d+)\\.`;

function compile(text: string, field: string): Compiled {
  const cached = compiled.get(text);
  if (cached) return cached;
  if (!engine) throw new LoraConfigError(`${field}: patterns are compiled by preparePatterns() first (internal error)`);
  if (text.length > MAX_PATTERN_LENGTH) {
    throw new LoraConfigError(`${field}: a pattern of ${text.length} characters is over the ${MAX_PATTERN_LENGTH}-character limit`);
  }
  let re: Compiled;
  try {
    re = engine.RE2JS.compile(text);
  } catch (error) {
    const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
    throw new LoraConfigError(
      `${field}: '${shown}' is not a regular expression the linear-time engine (RE2) can run (${(error as Error).message.slice(0, 200)})`,
    );
  }
  if (compiled.size > 4096) compiled.clear();
  compiled.set(text, re);
  return re;
}
