/**
 * Typed access to a parsed config.json. Every failure names the file and the field, and defaults follow
 * transformers' config classes so a sparse config.json means what it means in Python.
 */
import { preview } from '@dorajs/core';
import { ModelConfigError } from '../errors.js';

export type JsonObject = Readonly<Record<string, unknown>>;

/** Sizes index int32 token ids and typed arrays: nothing real comes near 2^31. */
export const MAX_CONFIG_SIZE = 2 ** 31 - 1;

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

  /** A positive integer (sizes, counts), at most MAX_CONFIG_SIZE. */
  size(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer, got ${preview(v)}`);
    if (v > MAX_CONFIG_SIZE) this.fail(field, `is ${v}, over the limit of ${MAX_CONFIG_SIZE} for any size or count`);
    return v;
  }

  /** A finite number. */
  number(field: string, fallback?: number): number {
    const v = this.get(field, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a number, got ${preview(v)}`);
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
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${preview(v)}`);
    return v;
  }

  string(field: string, fallback?: string): string {
    const v = this.get(field, fallback);
    if (typeof v !== 'string') this.fail(field, `must be a string, got ${preview(v)}`);
    return v;
  }

  /** A nested object, or null when absent. */
  object(field: string): ConfigFields | null {
    const v = this.json[field];
    if (v === undefined || v === null) return null;
    if (!isJsonObject(v)) this.fail(field, `must be an object, got ${preview(v)}`);
    return new ConfigFields(v, this.file, `${this.path}${field}.`);
  }

  /** Raises a config error for `field` (used for values that parse but cannot be honoured). */
  reject(field: string, message: string): never {
    this.fail(field, message);
  }
}
