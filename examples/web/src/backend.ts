/**
 * The backend the page uses: WebGPU when the browser has a real GPU adapter, else the CPU backend (wasm
 * SIMD, with worker threads when the page is cross-origin isolated, one thread when it is not).
 * `?backend=cpu|webgpu` forces one.
 */
import { type Backend, setDefaultBackend } from '@dorajs/core';
import { loadCpuBackend } from '@dorajs/backend-cpu';

export interface PickedBackend {
  readonly backend: Backend;
  /** 'webgpu' | 'cpu' */
  readonly kind: 'webgpu' | 'cpu';
  /** One line for the page: which backend and why. */
  readonly summary: string;
  readonly threads: number;
}

export type BackendChoice = 'auto' | 'cpu' | 'webgpu';

/** Picks the backend and makes it the default (tensors the page creates go there). */
export async function pickBackend(choice: BackendChoice): Promise<PickedBackend> {
  const picked = await findBackend(choice);
  setDefaultBackend(picked.backend);
  return picked;
}

async function findBackend(choice: BackendChoice): Promise<PickedBackend> {
  let why = '';
  if (choice !== 'cpu') {
    if (!('gpu' in navigator) || !navigator.gpu) why = 'this browser has no WebGPU';
    else {
      try {
        const { createWebGpuBackend } = await import('@dorajs/backend-webgpu');
        const backend = await createWebGpuBackend();
        if (choice === 'auto' && backend.capabilities.software) {
          why = `WebGPU runs on a software adapter (${backend.description}), slower than wasm`;
          backend.dispose();
        } else {
          return { backend, kind: 'webgpu', summary: `WebGPU — ${backend.description}`, threads: 0 };
        }
      } catch (e) {
        if (choice === 'webgpu') throw e;
        why = `WebGPU is unavailable (${(e as Error).message})`;
      }
    }
    if (choice === 'webgpu') throw new Error(`WebGPU was asked for but ${why}`);
  }
  // The wasm kernel emitter is a lazy chunk of the page, fetched here.
  const backend = await loadCpuBackend({ threads: 'auto' });
  await backend.ready();
  const threads = backend.threads;
  // e.g. "wasm SIMD + FMA, 2 threads", or "…, 1 thread: page is not cross-origin isolated" on a static host.
  const hint = crossOriginIsolated ? '' : ' (serve it with COOP/COEP headers for wasm threads)';
  return { backend, kind: 'cpu', summary: `CPU — ${backend.description}${hint}${why ? `; ${why}` : ''}`, threads };
}
