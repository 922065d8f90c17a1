/**
 * The fuzz runner: runs a target's inputs in a worker thread and watches it from outside. A synchronous
 * hang cannot time itself, so the watchdog here reads the worker's heartbeat (the number of the input it
 * is on, in shared memory) every 50 ms and terminates the worker when it has not moved for `hangMs`;
 * the input is reported and the run goes on in a fresh worker from the next one. Memory is bounded two
 * ways: the process's resident memory, which includes ArrayBuffers outside the heap, by the watchdog
 * (over `memoryMb` above what it was before the first worker started), and the worker's JS heap by
 * `resourceLimits` as a backstop (exceeding it ends the worker with ERR_WORKER_OUT_OF_MEMORY). On a loaded
 * machine an input can miss the deadline without hanging, so a hang is confirmed by running the input
 * again alone, `confirmHangs` times; it counts as a hang only if it misses every time.
 */
import { Worker } from 'node:worker_threads';
import { type Failure, type FailureKind, type FromWorker, HEARTBEAT, READY, type Slowest, type WorkerJob } from './protocol.js';

export type { Failure, FailureKind, Slowest } from './protocol.js';

/** The worker always runs from the built output (src/ and dist/ are siblings). */
const WORKER = new URL('../dist/worker.js', import.meta.url);

export interface FuzzOptions {
  readonly target: string;
  readonly seed: number;
  readonly count: number;
  /** First input number (default 0): `from: i, count: 1` reruns one reported input. */
  readonly from?: number;
  /** An input with no progress for this long is a hang (default 1000 ms). */
  readonly hangMs?: number;
  /** The most the process's resident memory may grow (default 512 MiB); the worker's heap limit is twice this. */
  readonly memoryMb?: number;
  /** Reruns of an input that missed the deadline before it counts as a hang (default 2). */
  readonly confirmHangs?: number;
  /** Called with the number of inputs run so far, about once a second. */
  readonly onProgress?: (done: number) => void;
  /** Called for each failure, with the input when the worker could send it (not after a hang or a crash). */
  readonly onFailure?: (failure: Failure, input?: Uint8Array) => void;
}

export interface FuzzReport {
  readonly target: string;
  readonly seed: number;
  readonly from: number;
  readonly count: number;
  /** Inputs run to the end or to a reported failure. */
  readonly inputs: number;
  /** 'accepted' or the error class that rejected an input → how many. */
  readonly verdicts: Record<string, number>;
  readonly failures: Failure[];
  /** Inputs that missed the deadline once but not on a rerun (load on the machine). */
  readonly slowUnderLoad: number[];
  readonly slowest: Slowest;
  readonly elapsedMs: number;
  /** Growth of the process's resident memory over the run, at its peak (MiB). */
  readonly peakRssGrowthMb: number;
}

type Outcome =
  | { readonly stopped: false }
  | { readonly stopped: true; readonly index: number; readonly kind: FailureKind; readonly message: string };

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const from = options.from ?? 0;
  const hangMs = options.hangMs ?? 1000;
  const memoryMb = options.memoryMb ?? 512;
  const confirmHangs = options.confirmHangs ?? 2;
  const started = Date.now();
  const baselineRss = process.memoryUsage.rss();
  const report = {
    target: options.target,
    seed: options.seed,
    from,
    count: options.count,
    inputs: 0,
    verdicts: {} as Record<string, number>,
    failures: [] as Failure[],
    slowUnderLoad: [] as number[],
    slowest: { index: -1, ms: 0 },
    elapsedMs: 0,
    peakRssGrowthMb: 0,
  };
  const end = from + options.count;
  let lastProgress = Date.now();

  const run = (jobFrom: number, jobCount: number, onFailure: (f: Failure, input?: Uint8Array) => void): Promise<Outcome> =>
    new Promise((resolve, reject) => {
      const heartbeat = new SharedArrayBuffer(8);
      const beats = new Int32Array(heartbeat);
      const job: WorkerJob = { target: options.target, seed: options.seed, from: jobFrom, count: jobCount, heartbeat };
      const worker = new Worker(WORKER, {
        workerData: job,
        // Not the parent's flags: under vitest they select the TypeScript sources, which a worker cannot load.
        execArgv: [],
        // The heap limit is a backstop at twice the bound: the resident-memory check below fires first,
        // before V8 slows to a crawl collecting garbage near its limit (which would read as a hang).
        resourceLimits: { maxOldGenerationSizeMb: 2 * memoryMb, maxYoungGenerationSizeMb: 32 },
        stdout: true,
        stderr: true,
      });
      // Console output of the code under test (warnings) is dropped, not buffered.
      worker.stdout.resume();
      worker.stderr.resume();
      let settled = false;
      let last = 0;
      let lastChange = Date.now();
      const current = (): number => Math.max(jobFrom, Atomics.load(beats, HEARTBEAT) - 1);
      const stop = (kind: FailureKind, message: string): void => {
        if (settled) return;
        settled = true;
        clearInterval(timer);
        const index = current();
        void worker.terminate().then(
          () => resolve({ stopped: true, index, kind, message }),
          () => resolve({ stopped: true, index, kind, message }),
        );
      };
      const timer = setInterval(() => {
        const rss = process.memoryUsage.rss() - baselineRss;
        report.peakRssGrowthMb = Math.max(report.peakRssGrowthMb, rss / 2 ** 20);
        if (rss > memoryMb * 2 ** 20)
          return stop('memory', `resident memory grew by ${Math.round(rss / 2 ** 20)} MiB (limit ${memoryMb} MiB)`);
        if (Atomics.load(beats, READY) === 0) return;
        const beat = Atomics.load(beats, HEARTBEAT);
        const now = Date.now();
        if (beat !== last) {
          last = beat;
          lastChange = now;
        } else if (now - lastChange > hangMs) {
          stop('hang', `no progress for ${now - lastChange} ms`);
        }
        if (options.onProgress !== undefined && now - lastProgress >= 1000) {
          lastProgress = now;
          options.onProgress(report.inputs + Math.max(0, beat - 1 - jobFrom));
        }
      }, 50);
      worker.on('message', (message: FromWorker) => {
        if (message.kind === 'failure') onFailure(message.failure, message.input);
        else if (message.kind === 'verdicts') {
          for (const [k, v] of Object.entries(message.verdicts)) report.verdicts[k] = (report.verdicts[k] ?? 0) + v;
          if (message.slowest.ms > report.slowest.ms) report.slowest = message.slowest;
        } else if (message.kind === 'done' && !settled) {
          settled = true;
          clearInterval(timer);
          resolve({ stopped: false });
        }
      });
      worker.on('error', (error: Error & { code?: string }) => {
        if (error.code === 'ERR_WORKER_OUT_OF_MEMORY') stop('memory', `the JS heap passed ${memoryMb} MiB (${error.message})`);
        else if (Atomics.load(beats, READY) === 0) {
          settled = true;
          clearInterval(timer);
          reject(error);
        } else stop('crash', `${error.name}: ${error.message}`);
      });
      worker.on('exit', (code) => {
        if (!settled) stop('crash', `the worker exited with code ${code}`);
      });
    });

  const record = (failure: Failure, input?: Uint8Array): void => {
    report.failures.push(failure);
    options.onFailure?.(failure, input);
  };
  let next = from;
  while (next < end) {
    const outcome = await run(next, end - next, record);
    if (!outcome.stopped) {
      report.inputs += end - next;
      break;
    }
    report.inputs += outcome.index - next + 1;
    if (outcome.kind === 'hang') {
      let confirmed = true;
      for (let i = 0; i < confirmHangs && confirmed; i++) {
        const again = await run(outcome.index, 1, record);
        confirmed = again.stopped && again.kind === 'hang';
      }
      if (confirmed) record({ index: outcome.index, kind: 'hang', message: outcome.message });
      else report.slowUnderLoad.push(outcome.index);
    } else {
      record({ index: outcome.index, kind: outcome.kind, message: outcome.message });
    }
    next = outcome.index + 1;
  }
  report.elapsedMs = Date.now() - started;
  return report;
}
