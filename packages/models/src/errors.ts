/**
 * Errors raised by model construction, loading and saving. Each names its culprit (file, key, field,
 * id) in the message and keeps it as a field, so the CLI can print one line and callers can branch.
 */
import { ConfigError, DoraError, quoted, ShapeError, StateDictError } from '@dorajs/core';

/** A `model_type` this package does not implement. */
export class UnsupportedModelError extends ConfigError {
  static override readonly typeName: string = 'UnsupportedModelError';
  constructor(
    readonly modelType: string,
    readonly file: string,
    readonly supported: readonly string[],
  ) {
    super(`${file}: unsupported model_type ${quoted(modelType)} (supported: ${supported.join(', ')})`);
  }
}

/** A config.json field is missing, has the wrong type, or a value the model cannot honour. */
export class ModelConfigError extends ConfigError {
  static override readonly typeName: string = 'ModelConfigError';
  constructor(
    message: string,
    readonly file: string,
    readonly field: string,
  ) {
    super(`${file}: ${quoted(field)} ${message}`);
  }
}

/** The model folder has no `model.safetensors` and no `model.safetensors.index.json`. */
export class NoWeightsError extends DoraError {
  static override readonly typeName: string = 'NoWeightsError';
  constructor(
    readonly dir: string,
    detail = '',
  ) {
    super(`${dir}: no weights found (expected model.safetensors or model.safetensors.index.json)${detail}`);
  }
}

/** The checkpoint lacks a tensor the model needs. */
export class MissingWeightError extends StateDictError {
  static override readonly typeName: string = 'MissingWeightError';
  constructor(
    readonly key: string,
    readonly file: string,
  ) {
    super(`${file}: missing weight '${key}'`);
  }
}

/** A checkpoint tensor's shape differs from the parameter it corresponds to. */
export class WeightShapeError extends StateDictError {
  static override readonly typeName: string = 'WeightShapeError';
  constructor(
    readonly key: string,
    readonly file: string,
    readonly modelShape: readonly number[],
    readonly checkpointShape: readonly number[],
  ) {
    super(`${file}: weight '${key}' is [${checkpointShape.join(', ')}] in the checkpoint but [${modelShape.join(', ')}] in the model`);
  }
}

/** A shard index (`model.safetensors.index.json`) is malformed or points at a missing file. */
export class ShardIndexError extends DoraError {
  static override readonly typeName: string = 'ShardIndexError';
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(`${file}: ${message}`);
  }
}

/** Token ids that cannot be fed to the model: out of vocabulary, not integers, not rectangular. */
export class TokenIdsError extends ShapeError {
  static override readonly typeName: string = 'TokenIdsError';
  constructor(
    message: string,
    readonly source: string,
  ) {
    super(`${source}: ${message}`);
  }
}

/** A model folder cannot be read (no config.json, invalid JSON) or written (file-system failure). */
export class ModelFolderError extends DoraError {
  static override readonly typeName: string = 'ModelFolderError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** A checkpoint tensor that should fill a parameter is not a float type (F32, BF16, F16). */
export class WeightDTypeError extends StateDictError {
  static override readonly typeName: string = 'WeightDTypeError';
  constructor(
    readonly key: string,
    readonly file: string,
    readonly dtype: string,
  ) {
    super(`${file}: weight '${key}' is ${dtype}; parameters load from F32, BF16 or F16`);
  }
}

/** The output folder of `saveModel` already exists and is not empty. */
export class OutputExistsError extends DoraError {
  static override readonly typeName: string = 'OutputExistsError';
  constructor(readonly dir: string) {
    super(`${dir}: output folder exists and is not empty; refusing to overwrite it`);
  }
}

/** A RoPE variant (`rope_type`) other than the ones implemented. */
export class UnsupportedRopeError extends ModelConfigError {
  static override readonly typeName: string = 'UnsupportedRopeError';
  constructor(
    readonly ropeType: string,
    file: string,
    field: string,
    supported: readonly string[],
  ) {
    super(`is rope_type ${quoted(ropeType)}, which is not supported (supported: ${supported.join(', ')})`, file, field);
  }
}

/** An `activation_function` / `hidden_act` name without an implementation here. */
export class UnsupportedActivationError extends ModelConfigError {
  static override readonly typeName: string = 'UnsupportedActivationError';
  constructor(
    readonly activation: string,
    file: string,
    field: string,
    supported: readonly string[],
  ) {
    super(`is ${quoted(activation)}, which is not supported (supported: ${supported.join(', ')})`, file, field);
  }
}

/** config.json declares a model much larger than its checkpoint holds. */
export class ModelSizeError extends ConfigError {
  static override readonly typeName: string = 'ModelSizeError';
  constructor(
    readonly config: string,
    readonly checkpoint: string,
    readonly limit: number,
  ) {
    super(
      `${config}: declares a model with more than ${limit} weight values, more than ${checkpoint} can fill: ` +
        'check its sizes (vocab_size, hidden_size, intermediate_size, num_hidden_layers, …)',
    );
  }
}

/** A forward or generation call that cannot run as asked (cache full, mask of the wrong size, bad options). */
export class GenerationError extends ConfigError {
  static override readonly typeName: string = 'GenerationError';
}

/** `generate` was aborted through its AbortSignal; `partial` holds what was generated until then. */
export class GenerationAbortedError extends DoraError {
  static override readonly typeName: string = 'GenerationAbortedError';
  constructor(readonly partial: import('./generation/generate.js').GenerateOutput) {
    super(`generation aborted after ${Math.max(0, ...partial.newTokens.map((t) => t.length))} new tokens`);
  }
}

/** A tokenizer that cannot be loaded, does not fit the model, or a chat template that fails. */
export class TokenizerError extends ConfigError {
  static override readonly typeName: string = 'TokenizerError';
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(`${file}: ${message}`);
  }
}

/** A PEFT adapter that does not fit the model (made for another architecture or size). */
export class AdapterMismatchError extends ConfigError {
  static override readonly typeName: string = 'AdapterMismatchError';
  constructor(
    message: string,
    readonly file: string,
    readonly key?: string,
  ) {
    super(message);
  }
}
