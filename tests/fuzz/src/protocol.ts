/** Messages and shared slots between the fuzz runner and its worker. */

/** Slot of the shared Int32Array holding 1 + the number of the input being run (0 before the first). */
export const HEARTBEAT = 0;
/** Slot set to 1 once the worker has loaded its target and seeds (the watchdog is armed from then on). */
export const READY = 1;

export interface WorkerJob {
  readonly target: string;
  readonly seed: number;
  readonly from: number;
  readonly count: number;
  /** SharedArrayBuffer of 2 Int32 slots (HEARTBEAT, READY). */
  readonly heartbeat: SharedArrayBuffer;
}

export type FailureKind = 'untyped' | 'invariant' | 'hang' | 'memory' | 'crash';

export interface Failure {
  /** The input's number: `pnpm fuzz --target T --seed S --from INDEX --count 1` runs it again. */
  readonly index: number;
  readonly kind: FailureKind;
  readonly message: string;
}

export type FromWorker =
  | { readonly kind: 'failure'; readonly failure: Failure; readonly input: Uint8Array }
  | { readonly kind: 'verdicts'; readonly verdicts: Readonly<Record<string, number>>; readonly slowest: Slowest }
  | { readonly kind: 'done' };

/** The slowest input of a batch and its time (wall clock, so load on the machine shows here). */
export interface Slowest {
  readonly index: number;
  readonly ms: number;
}
