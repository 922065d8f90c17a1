/**
 * Worker threads for the wasm kernels. Each worker instantiates the same kernel module over the same shared
 * memory, so a job is just "call export F(task, args, tid) for every task": the arguments already sit in the
 * heap, and results land in place.
 *
 * Protocol, over a small SharedArrayBuffer of control words:
 * - Posting a job (calling thread): SEQ becomes odd while FN/ARGS/TOTAL are written, then CLAIM is reset to
 *   (seq, 0) and SEQ is set to the new even seq and notified. A reader that sees the same even SEQ before
 *   and after reading the parameters has a consistent copy (a seqlock).
 * - Taking tasks (every thread, the caller included): compare-and-swap CLAIM from (seq, c) to (seq, c + 1)
 *   while c < TOTAL. The seq in the word ties a claim to the job whose parameters the thread read, so a
 *   late worker can never claim a task of a newer job with stale parameters. Each finished task adds 1 to
 *   DONE; the caller waits until DONE = TOTAL.
 * The caller never waits for a worker that has not claimed anything, so workers that are still starting
 * (or descheduled on a busy machine) delay nothing: the caller simply takes more tasks itself.
 */
import { BackendError } from '@dorajs/core';
import type { HostWorker, ThreadHost } from './host.js';
import type { TaskRunner } from './kernels.js';
import { TASK_EXPORTS } from './kernel-module.js';
import type { KernelVariant, TaskFn, TaskName, WasmRuntime } from './runtime.js';
import { WORKER_SOURCE } from './worker-source.js';

/** Control word indices (Int32Array over the control buffer). */
export const Ctl = { seq: 0, fn: 1, args: 2, total: 3, done: 4, quit: 5, errors: 6, ready: 7 } as const;
/** Byte offset of the 64-bit CLAIM word: (seq << 32) | tasks claimed. */
export const CLAIM_AT = 64;
const CONTROL_BYTES = 128;

export class WorkerPool implements TaskRunner {
  readonly threads: number;
  private readonly ctl: Int32Array;
  private readonly claim: BigInt64Array;
  private readonly workers: HostWorker[] = [];
  private readonly fns: readonly TaskFn[];
  private seq = 0;
  private closed = false;
  /** Workers are kept referenced (holding Node open) only while someone awaits `ready()` before start-up. */
  private starting = true;
  private readonly readyPromise: Promise<void>;

  constructor(
    host: ThreadHost,
    runtime: WasmRuntime,
    variant: KernelVariant,
    threads: number,
    private readonly canBlock: boolean,
  ) {
    this.threads = threads;
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    this.ctl = new Int32Array(control, 0, 16);
    this.claim = new BigInt64Array(control, CLAIM_AT, 1);
    this.fns = TASK_EXPORTS.map((name) => variant.task(name));
    let started = 0;
    let resolveReady!: () => void;
    let rejectReady!: (e: Error) => void;
    this.readyPromise = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    // A worker that fails to start must not crash a process that never asked for ready(): the calling
    // thread does the work anyway. Callers of ready() still see the rejection.
    this.readyPromise.catch(() => undefined);
    const settled = () => {
      this.starting = false;
      // Idle workers must not keep Node alive: they only ever wait on shared memory.
      for (const w of this.workers) w.unref?.();
    };
    const onMessage = (m: unknown) => {
      if (m === 'ready' && ++started === threads - 1) {
        settled();
        resolveReady();
      } else if (typeof m === 'object' && m !== null && 'error' in m) {
        onError((m as { error: unknown }).error);
      }
    };
    // A worker that dies leaves its share to the calling thread (which never waits for unclaimed tasks); a
    // worker dying inside a task it claimed would hang the caller, but tasks catch their own exceptions.
    const onError = (e: unknown) => {
      settled();
      rejectReady(new BackendError(`cpu: a worker thread failed: ${e instanceof Error ? e.message : String(e)}`));
    };
    for (let id = 1; id < threads; id++) {
      const worker = host.spawn(
        WORKER_SOURCE,
        { module: variant.module, memory: runtime.memory, control, id, names: TASK_EXPORTS },
        onMessage,
        onError,
      );
      worker.unref?.();
      this.workers.push(worker);
    }
    if (threads === 1) settled();
  }

  /**
   * Resolves once every worker has compiled the kernels and waits for jobs. While someone waits for that,
   * the workers keep Node alive (their start-up message would otherwise be lost when the loop empties).
   */
  ready(): Promise<void> {
    if (this.starting) for (const w of this.workers) w.ref?.();
    return this.readyPromise;
  }

  run(name: TaskName, tasks: number, args: number): void {
    if (this.closed) throw new BackendError('cpu: the worker pool was closed (the backend was disposed)');
    const fn = TASK_EXPORTS.indexOf(name);
    const ctl = this.ctl;
    const seq = (this.seq = (this.seq + 2) & 0x3fffffff);
    Atomics.store(ctl, Ctl.seq, seq - 1);
    Atomics.store(ctl, Ctl.fn, fn);
    Atomics.store(ctl, Ctl.args, args);
    Atomics.store(ctl, Ctl.total, tasks);
    Atomics.store(ctl, Ctl.done, 0);
    Atomics.store(ctl, Ctl.errors, 0);
    Atomics.store(this.claim, 0, BigInt(seq) << 32n);
    Atomics.store(ctl, Ctl.seq, seq);
    Atomics.notify(ctl, Ctl.seq);

    const tag = BigInt(seq) << 32n;
    const f = this.fns[fn]!;
    let error: unknown = null;
    for (;;) {
      const v = Atomics.load(this.claim, 0);
      const c = Number(v - tag);
      if (c >= tasks) break;
      if (Atomics.compareExchange(this.claim, 0, v, v + 1n) !== v) continue;
      try {
        f(c, args, 0);
      } catch (e) {
        error ??= e;
      }
      Atomics.add(ctl, Ctl.done, 1);
    }
    // Wait for tasks the workers claimed and are still running.
    for (let d = Atomics.load(ctl, Ctl.done); d < tasks; d = Atomics.load(ctl, Ctl.done)) {
      if (this.canBlock) Atomics.wait(ctl, Ctl.done, d);
    }
    if (error) throw error;
    const failed = Atomics.load(ctl, Ctl.errors);
    if (failed > 0) throw new BackendError(`cpu ${name}: ${failed} task(s) failed in a worker thread`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctl, Ctl.quit, 1);
    Atomics.add(this.ctl, Ctl.seq, 2);
    Atomics.notify(this.ctl, Ctl.seq);
    for (const w of this.workers) void w.terminate();
  }
}
