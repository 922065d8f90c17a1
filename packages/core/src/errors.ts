/**
 * Typed errors. Each names its culprit (file, key, module, op, shapes) in the message and carries the
 * details as fields, so callers can branch on `instanceof` or `name` and the CLI can print one line.
 *
 * Names are spelled out (`static typeName`), never taken from the class: a minifying bundler renames
 * classes, and `ModelFolderError` would reach the user as `Fg`. Every dorajs error class declares its own
 * (a test checks); a subclass written elsewhere without one is named after its class.
 */
export class DoraError extends Error {
  static readonly typeName: string = 'DoraError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = ownTypeName(new.target);
  }
}

/** The `typeName` a class declares itself (not one it inherits), else its (possibly minified) class name. */
export function ownTypeName(cls: { readonly name: string }): string {
  return Object.hasOwn(cls, 'typeName') ? (cls as unknown as { typeName: string }).typeName : cls.name;
}

/** Two shapes that must agree do not. */
export class ShapeError extends DoraError {
  static override readonly typeName: string = 'ShapeError';
}

/** A dtype the operation cannot take. */
export class DTypeError extends DoraError {
  static override readonly typeName: string = 'DTypeError';
}

/** A backend lacks a kernel the caller needs. */
export class MissingKernelError extends DoraError {
  static override readonly typeName: string = 'MissingKernelError';
  constructor(
    readonly op: string,
    readonly backend: string,
  ) {
    super(`backend '${backend}' has no kernel '${op}'`);
  }
}

/** A tensor was used after dispose(). */
export class DisposedTensorError extends DoraError {
  static override readonly typeName: string = 'DisposedTensorError';
}

/** No backend could be created, or an unknown one was named. */
export class BackendError extends DoraError {
  static override readonly typeName: string = 'BackendError';
}

/** A safetensors file is malformed; `file` and `key` (when known) say where. */
export class SafetensorsError extends DoraError {
  static override readonly typeName: string = 'SafetensorsError';
  constructor(
    message: string,
    readonly file: string,
    readonly key?: string,
  ) {
    super(`${file}${key !== undefined ? ` [${clip(key)}]` : ''}: ${message}`);
  }
}

/**
 * Keys come from untrusted headers: a message shows at most the first 200 characters of one, with
 * control characters escaped so that it stays on one line.
 */
function clip(text: string): string {
  const clipped = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this escapes
  return clipped.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A state dict does not fit a module: a missing, unexpected or mis-shaped key. */
export class StateDictError extends DoraError {
  static override readonly typeName: string = 'StateDictError';
}

/** Invalid configuration or argument. */
export class ConfigError extends DoraError {
  static override readonly typeName: string = 'ConfigError';
}

/** A weight cannot be quantized (NaN/Inf, an unsupported format) or a packed weight is malformed. */
export class QuantizationError extends DoraError {
  static override readonly typeName: string = 'QuantizationError';
  constructor(
    message: string,
    readonly tensor: string,
  ) {
    super(`${tensor}: ${message}`);
  }
}

/**
 * A tensor does not fit the memory a backend can address (the CPU backend's wasm heap, a GPU buffer):
 * refused up front, before anything is allocated, naming the tensor, the bytes and the limit.
 */
export class OutOfMemoryError extends DoraError {
  static override readonly typeName: string = 'OutOfMemoryError';
  constructor(
    message: string,
    readonly tensor: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(message);
  }
}

/**
 * A path cannot be used: an input that is not a readable regular file, or an output that exists as the
 * wrong kind, sits under a file, is not writable, or is (or contains, or lies inside) one of the inputs.
 * `path` is the culprit; `reason` is the message without it.
 */
export class FileError extends DoraError {
  static override readonly typeName: string = 'FileError';
  constructor(
    readonly reason: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${reason}`, options);
  }
}

/** Writing an output failed (disk full, I/O error, permission, read-only file system); the previous output is intact. */
export class OutputError extends FileError {
  static override readonly typeName: string = 'OutputError';
}
