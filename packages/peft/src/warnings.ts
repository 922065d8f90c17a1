/**
 * PEFT warns (Python `warnings.warn`) where it silently corrects or tolerates something; dorajs routes the
 * same warnings through one replaceable handler so applications can log, collect or silence them and
 * tests can assert on them.
 */
export type PeftWarningCode =
  | 'fan-in-fan-out-corrected'
  | 'conv-dilation'
  | 'conv-groups'
  | 'unexpected-adapter-keys'
  | 'runtime-config-dropped'
  | 'already-merged'
  | 'nothing-merged'
  | 'unknown-config-value'
  | 'unknown-config-key'
  | 'target-module-exists'
  | 'quantized-merge-rounding';

export interface PeftWarning {
  readonly code: PeftWarningCode;
  readonly message: string;
}

export type PeftWarningHandler = (warning: PeftWarning) => void;

const defaultHandler: PeftWarningHandler = (w) => console.warn(`[@dorajs/peft] ${w.message}`);
let handler: PeftWarningHandler = defaultHandler;

/** Replaces the warning handler; returns the previous one. `null` restores the default (console.warn). */
export function setPeftWarningHandler(next: PeftWarningHandler | null): PeftWarningHandler {
  const prev = handler;
  handler = next ?? defaultHandler;
  return prev;
}

export function warn(code: PeftWarningCode, message: string): void {
  handler({ code, message });
}

/** Runs `fn` and returns the warnings it raised (and suppresses them), plus its result. */
export function collectWarnings<T>(fn: () => T): { result: T; warnings: PeftWarning[] } {
  const warnings: PeftWarning[] = [];
  const prev = setPeftWarningHandler((w) => warnings.push(w));
  try {
    return { result: fn(), warnings };
  } finally {
    setPeftWarningHandler(prev);
  }
}

/** Async form of collectWarnings. */
export async function collectWarningsAsync<T>(fn: () => Promise<T>): Promise<{ result: T; warnings: PeftWarning[] }> {
  const warnings: PeftWarning[] = [];
  const prev = setPeftWarningHandler((w) => warnings.push(w));
  try {
    return { result: await fn(), warnings };
  } finally {
    setPeftWarningHandler(prev);
  }
}
