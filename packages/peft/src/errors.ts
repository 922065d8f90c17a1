/**
 * The errors @dorajs/peft raises. Each subclasses a core error so callers that branch on `DoraError`,
 * `ConfigError`, `ShapeError` or `StateDictError` keep working, and each message names its culprit: the
 * file, the key, the module path, the adapter, the shapes.
 */
import { ConfigError, DoraError, ShapeError, StateDictError } from '@dorajs/core';

/** A LoraConfig (or its adapter_config.json) is invalid or asks for something PEFT refuses too. */
export class LoraConfigError extends ConfigError {
  static override readonly typeName: string = 'LoraConfigError';
}

/** `targetModules` matched no module of the model. */
export class TargetNotFoundError extends ConfigError {
  static override readonly typeName: string = 'TargetNotFoundError';
  constructor(
    readonly targets: string,
    readonly candidates: readonly string[],
  ) {
    super(
      `target modules ${targets} matched no Linear, Conv1D, Embedding or Conv1d/Conv2d/Conv3d module of the model` +
        (candidates.length
          ? ` (candidates: ${candidates.slice(0, 20).join(', ')}${candidates.length > 20 ? ', …' : ''})`
          : ' (the model has no such layers)'),
    );
  }
}

/** An adapter directory is unreadable: a missing or invalid adapter_config.json or adapter_model.safetensors. */
export class AdapterFileError extends DoraError {
  static override readonly typeName: string = 'AdapterFileError';
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
  }
}

/** A tensor the adapter needs is missing from its file. */
export class AdapterKeyError extends StateDictError {
  static override readonly typeName: string = 'AdapterKeyError';
  constructor(
    readonly file: string,
    readonly key: string,
    readonly module: string,
  ) {
    super(`${file}: tensor '${key}' for module '${module}' is missing`);
  }
}

/** An adapter tensor does not fit the module it belongs to. */
export class AdapterShapeError extends ShapeError {
  static override readonly typeName: string = 'AdapterShapeError';
  constructor(
    readonly file: string,
    readonly key: string,
    readonly module: string,
    readonly expected: readonly number[],
    readonly actual: readonly number[],
  ) {
    super(`${file}: tensor '${key}' has shape [${actual.join(', ')}] but module '${module}' needs [${expected.join(', ')}]`);
  }
}

/** An adapter name that does not exist (or already exists, for `addAdapter`). */
export class AdapterNameError extends ConfigError {
  static override readonly typeName: string = 'AdapterNameError';
}

/** A merge produced NaN or Inf (safe merge), or a merge that cannot be done (grouped conv). */
export class MergeError extends DoraError {
  static override readonly typeName: string = 'MergeError';
  constructor(
    message: string,
    readonly module: string,
    readonly adapter: string,
  ) {
    super(message);
  }
}

/** An operation PEFT's LoRA offers that is impossible or unsound in this combination (e.g. weighted DoRA adapters). */
export class UnsupportedAdapterOperationError extends DoraError {
  static override readonly typeName: string = 'UnsupportedAdapterOperationError';
}
