/**
 * Flag parsing on node:util's parseArgs, with the help text and the usage errors the CLI promises.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './errors.js';

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly description: string;
  readonly required?: boolean;
  readonly default?: string | boolean;
  readonly placeholder?: string;
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  readonly examples?: readonly string[];
}

export const COMMON_FLAGS: Readonly<Record<string, FlagSpec>> = {
  backend: { type: 'string', description: 'compute backend: cpu | webgpu | tfjs | auto', default: 'auto', placeholder: 'NAME' },
  debug: { type: 'boolean', description: 'print stack traces on errors' },
  verbose: { type: 'boolean', description: "also show native libraries' diagnostics (Dawn, tfjs); or DORA_DEBUG=1" },
  help: { type: 'boolean', description: 'show this help' },
};

export function helpText(spec: CommandSpec): string {
  const flags = { ...spec.flags, ...COMMON_FLAGS };
  const lines = [`Usage: dora ${spec.name} [options]`, '', spec.summary, '', 'Options:'];
  const left = (k: string, f: FlagSpec) => `  --${k}${f.type === 'string' ? ` ${f.placeholder ?? 'VALUE'}` : ''}`;
  const width = Math.max(...Object.entries(flags).map(([k, f]) => left(k, f).length)) + 2;
  for (const [k, f] of Object.entries(flags)) {
    const extra = f.required ? ' (required)' : f.default !== undefined && f.default !== false ? ` (default: ${f.default})` : '';
    lines.push(`${left(k, f).padEnd(width)}${f.description}${extra}`);
  }
  if (spec.examples?.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}

export type ParsedFlags = Record<string, string | boolean | undefined>;

export function parseFlags(spec: CommandSpec, argv: readonly string[]): ParsedFlags {
  const flags = { ...spec.flags, ...COMMON_FLAGS };
  const options: ParseArgsConfig['options'] = {};
  for (const [k, f] of Object.entries(flags)) options[k] = { type: f.type };
  let values: ParsedFlags;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }) as { values: ParsedFlags });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/, '')} (see 'dora ${spec.name} --help')`);
  }
  if (values.help) return values;
  for (const [k, f] of Object.entries(flags)) {
    if (values[k] === undefined && f.default !== undefined) values[k] = f.default;
    if (f.required && values[k] === undefined) throw new UsageError(`missing required flag --${k} (see 'dora ${spec.name} --help')`);
  }
  return values;
}

export function numberFlag(values: ParsedFlags, name: string, { integer = false, min = -Infinity } = {}): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    throw new UsageError(
      `--${name} expects ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` ≥ ${min}` : ''}, got '${String(raw)}'`,
    );
  }
  return n;
}
