/**
 * Node's threads for the pool (the `node` condition of the `#node-threads` import; browsers get
 * node-threads.web.ts, so their bundles never name a Node module).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { HostWorker } from './host.js';

export interface NodeWorkerThreads {
  Worker: new (
    source: string,
    options: { eval: true; workerData: unknown },
  ) => HostWorker & { on(event: 'message' | 'error', fn: (m: unknown) => void): void };
}

export const nodeThreads: NodeWorkerThreads | null = { Worker: Worker as unknown as NodeWorkerThreads['Worker'] };
export const nodeCores: number = availableParallelism();

/**
 * The worker program's start: its data arrives as workerData. import() works whether Node evaluates the
 * program as a script or (--input-type=module inherited) as a module.
 */
export const WORKER_BOOT = `import('node:worker_threads').then((wt) => start(wt.workerData, (m) => wt.parentPort.postMessage(m)));`;
