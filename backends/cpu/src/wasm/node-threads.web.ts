/** Browsers' side of the `#node-threads` import: no Node threads (Web Workers are found in host.ts). */
import type { NodeWorkerThreads } from './node-threads.js';

export const nodeThreads: NodeWorkerThreads | null = null;
export const nodeCores: number = 0;

/** The worker program's start: its data is the first message. */
export const WORKER_BOOT = `self.onmessage = (e) => { self.onmessage = null; start(e.data, (m) => self.postMessage(m)); };`;
