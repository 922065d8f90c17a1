/**
 * Typed access to a parsed config.json. Every failure names the file and the field, and defaults follow
 * transformers' config classes so a sparse config.json means what it means in Python.
 */
import { ModelConfigError } from '../errors.js';

export type JsonObject = Readonly<Record<string, unknown>>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ConfigFields {
  constructor(
    readonly json: JsonObject,
    /** Names the source in errors, e.g. the path of config.json. */
    readonly file: string,
    /** Prefix for nested objects, e.g. 'rope_parameters.'. */
    private readonly path = '',
  ) {}

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  private fail(field: string, message: string): never {
    throw new ModelConfigError(message, this.file, this.path + field);
  }

  private get(field: string, fallback: unknown): unknown {
    const v = this.json[field];
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(field, 'is required');
      return fallback;
    }
    return v;
  }

  /** A positive integer (sizes, counts). */
  size(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A finite number. */
  number(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A probability in [0, 1) (dropout rates). */
  probability(field: string, fallback?: number): number {
    const v = this.number(field, fallback);
    if (v < 0 || v >= 1) this.fail(field, `must be in [0, 1), got ${v}`);
    return v;
  }

  boolean(field: string, fallback?: boolean): boolean {
    const v = this.get(field, fallback);
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string(field: string, fallback?: string): string {
    const v = this.get(field, fallback);
    if (typeof v !== 'string') this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A nested object, or null when absent. */
  object(field: string): ConfigFields | null {
    const v = this.json[field];
    if (v === undefined || v === null) return null;
    if (!isJsonObject(v)) this.fail(field, `must be an object, got ${JSON.stringify(v)}`);
    return new ConfigFields(v, this.file, `${this.path}${field}.`);
  }

  /** Raises a config error for `field` (used for values that parse but cannot be honoured). */
  reject(field: string, message: string): never {
    this.fail(field, message);
  }
}
