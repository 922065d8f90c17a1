import { DoraError } from '@dorajs/core';

/** Bad command-line usage: unknown flag, missing required flag, malformed value. */
export class UsageError extends DoraError {
  static override readonly typeName: string = 'UsageError';
}

/** An input file (ids, data) is malformed; the message names the file. */
export class InputFileError extends DoraError {
  static override readonly typeName: string = 'InputFileError';
}

/**
 * The CLI's error contract: one line `dora: <ErrorName>: <message>` on stderr and exit code 1; the stack
 * only with --debug.
 */
export function reportError(error: unknown, debug: boolean, write: (line: string) => void = (l) => process.stderr.write(l)): number {
  const e = error instanceof Error ? error : new Error(String(error));
  const message = e.message.replace(/\s*\n\s*/g, ' ');
  write(`dora: ${e.name}: ${message}\n`);
  if (debug && e.stack) write(`${e.stack}\n`);
  return 1;
}
