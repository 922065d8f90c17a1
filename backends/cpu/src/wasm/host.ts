/**
 * What the host offers for threads: Node's worker_threads (from the `#node-threads` import, whose browser variant
 * has none) or Web Workers on a cross-origin-isolated page, and the number of cores.
 */
import { nodeCores, nodeThreads } from '#node-threads';

/** The part of a worker (Node's or the web's) the pool uses. */
export interface HostWorker {
  postMessage(message: unknown): void;
  terminate(): unknown;
  /** Node: whether the worker keeps the process alive. */
  ref?(): void;
  unref?(): void;
}

export interface ThreadHost {
  readonly kind: 'node' | 'web';
  /** Starts a worker running `source` (a classic script) and hands it `data`; `onError` hears it die. */
  spawn(source: string, data: unknown, onMessage: (message: unknown) => void, onError: (error: unknown) => void): HostWorker;
  /** Whether the calling thread may block in Atomics.wait (not a browser's main thread). */
  readonly canBlock: boolean;
}

/** The part of a worker's ErrorEvent we use. */
interface WebErrorEvent {
  readonly message?: string;
  preventDefault?(): void;
}

interface WebGlobals {
  Worker?: new (
    url: string,
  ) => HostWorker & { onmessage: ((e: { data: unknown }) => void) | null; onerror: ((e: WebErrorEvent) => void) | null };
  Blob?: new (parts: string[], options: { type: string }) => unknown;
  URL?: { createObjectURL(blob: unknown): string };
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
  document?: unknown;
}

/** One Blob URL per worker program for every pool of the page (never revoked: it is only the program's text). */
const blobUrls = new Map<string, string>();

/** The thread host of this environment, or null where workers cannot share memory with us. */
export function threadHost(): ThreadHost | null {
  if (nodeThreads) {
    const { Worker } = nodeThreads;
    return {
      kind: 'node',
      canBlock: true,
      spawn(source, data, onMessage, onError) {
        const worker = new Worker(source, { eval: true, workerData: data });
        worker.on('message', onMessage);
        // Without a listener an 'error' event would crash the process; the pool carries on without the worker.
        worker.on('error', onError);
        return worker;
      },
    };
  }
  const g = globalThis as WebGlobals;
  if (g.Worker && g.Blob && g.URL && g.crossOriginIsolated === true) {
    const { Worker: WebWorker, Blob: WebBlob, URL: WebURL } = g;
    return {
      kind: 'web',
      // A page's main thread may not block; a worker (where dorajs itself may run) may.
      canBlock: g.document === undefined,
      spawn(source, data, onMessage, onError) {
        let url = blobUrls.get(source);
        if (!url) blobUrls.set(source, (url = WebURL.createObjectURL(new WebBlob([source], { type: 'text/javascript' }))));
        const worker = new WebWorker(url);
        worker.onmessage = (e) => onMessage(e.data);
        // An ErrorEvent is not an Error: pass its message on, and keep the page from reporting it again.
        worker.onerror = (e) => {
          e.preventDefault?.();
          onError(new Error(e.message || 'the worker script failed to load'));
        };
        worker.postMessage(data);
        return worker;
      },
    };
  }
  return null;
}

/** Cores the host reports (1 when it does not say). */
export function hostCores(): number {
  if (nodeCores > 0) return nodeCores;
  return Math.max(1, (globalThis as WebGlobals).navigator?.hardwareConcurrency ?? 1);
}
