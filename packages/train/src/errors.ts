/**
 * Training's typed errors. Each names its culprit (file and line, label and range, model folder) so the
 * CLI can print one line and callers can branch on `instanceof`.
 */
import { DoraError } from '@dorajs/core';

/** A dataset file or record is malformed: `file` and (when known) the 1-based `line` say where. */
export class DatasetError extends DoraError {
  static override readonly typeName: string = 'DatasetError';
  constructor(
    message: string,
    readonly file: string,
    readonly line?: number,
    options?: { cause?: unknown },
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${message}`, options);
  }
}

/** A class label outside [0, numClasses). */
export class LabelOutOfRangeError extends DoraError {
  static override readonly typeName: string = 'LabelOutOfRangeError';
  constructor(
    readonly label: number,
    readonly numClasses: number,
    readonly where: string,
  ) {
    super(`${where}: label ${label} is outside [0, ${numClasses})`);
  }
}

/**
 * A model folder or weights file the job cannot use: a missing tokenizer.json, weights that are not the
 * expected model. (An unknown `model_type` is @dorajs/models' UnsupportedModelError.)
 */
export class ModelFolderError extends DoraError {
  static override readonly typeName: string = 'ModelFolderError';
  constructor(
    message: string,
    readonly folder: string,
  ) {
    super(`${folder}: ${message}`);
  }
}

/** A checkpoint that cannot be resumed from: missing files, or state that does not fit the run. */
export class CheckpointError extends DoraError {
  static override readonly typeName: string = 'CheckpointError';
  constructor(
    message: string,
    readonly folder: string,
    options?: { cause?: unknown },
  ) {
    super(`${folder}: ${message}`, options);
  }
}

/** The loss became NaN or infinite: training cannot continue meaningfully. */
export class NonFiniteLossError extends DoraError {
  static override readonly typeName: string = 'NonFiniteLossError';
  constructor(
    readonly step: number,
    readonly loss: number,
  ) {
    super(`loss is ${loss} at step ${step}: lower the learning rate or check the data`);
  }
}
