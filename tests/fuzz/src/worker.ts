/**
 * The fuzz worker: runs inputs `from … from+count-1` of one target. Before each input it stores the
 * input's number in shared memory, so the parent's watchdog sees a synchronous hang (which cannot time
 * itself) as a number that stops moving, and knows which input it was.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { inputRng } from './rng.js';
import { quietWarnings, TARGETS, Violation } from './targets.js';
import { type FromWorker, HEARTBEAT, READY, type WorkerJob } from './protocol.js';

const job = workerData as WorkerJob;
const heartbeat = new Int32Array(job.heartbeat);
const post = (message: FromWorker): void => parentPort!.postMessage(message);

quietWarnings();
const target = TARGETS[job.target];
if (target === undefined) throw new Error(`no fuzz target '${job.target}'`);
const seeds = target.seeds();
let verdicts: Record<string, number> = {};
let slowest = { index: -1, ms: 0 };
Atomics.store(heartbeat, READY, 1);

for (let index = job.from; index < job.from + job.count; index++) {
  Atomics.store(heartbeat, HEARTBEAT, index + 1);
  const rng = inputRng(job.seed, index);
  const input = target.generate(rng, seeds, index);
  const started = performance.now();
  try {
    const verdict = await target.check(input, rng);
    verdicts[verdict] = (verdicts[verdict] ?? 0) + 1;
  } catch (error) {
    const kind = error instanceof Violation ? 'invariant' : 'untyped';
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    post({ kind: 'failure', failure: { index, kind, message: message.slice(0, 500) }, input });
  }
  const ms = performance.now() - started;
  if (ms > slowest.ms) slowest = { index, ms };
  // Counts go out in batches, so a worker killed later loses at most one batch of them.
  if ((index - job.from + 1) % 1000 === 0) {
    post({ kind: 'verdicts', verdicts, slowest });
    verdicts = {};
  }
}
post({ kind: 'verdicts', verdicts, slowest });
post({ kind: 'done' });
