/**
 * The backends peft's fixture parity runs on: cpu (wasm kernels), webgpu (Dawn; Mesa's llvmpipe on machines
 * without a GPU) and tfjs (its cpu kernels), each with the project's bound for it (1e-5 on the host, 1e-4 off
 * it). Without a WebGPU adapter the webgpu runs are skipped locally, with the reason, but fail in CI
 * (CI=true), where llvmpipe must be present.
 */
import { HOST_TOLERANCE, OFF_HOST_TOLERANCE } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createTfjsBackend } from '@dorajs/backend-tfjs';
import { createWebGpuBackend } from '@dorajs/backend-webgpu';
import type { Backend } from '@dorajs/core';

export interface ParityBackend {
  readonly name: string;
  /** Null when the backend cannot run here (locally only; see the file comment). */
  readonly backend: Backend | null;
  readonly skipReason: string;
  /** The relative-error bound for this backend. */
  readonly tol: number;
}

async function open(name: string, create: () => Promise<Backend>): Promise<ParityBackend> {
  try {
    const backend = await create();
    return { name, backend, skipReason: '', tol: backend.capabilities.offHost ? OFF_HOST_TOLERANCE.rtol : HOST_TOLERANCE.rtol };
  } catch (e) {
    if (process.env.CI === 'true') throw new Error(`CI requires the ${name} backend: ${(e as Error).message}`);
    const skipReason = `no ${name} backend here, skipping: ${(e as Error).message}`;
    console.warn(skipReason);
    return { name, backend: null, skipReason, tol: 0 };
  }
}

/** One instance of each parity backend (dispose them with `disposeAll`). */
export async function parityBackends(): Promise<ParityBackend[]> {
  return [
    await open('cpu', async () => createCpuBackend() as unknown as Backend),
    await open('webgpu', async () => (await createWebGpuBackend()) as unknown as Backend),
    await open('tfjs-cpu', async () => (await createTfjsBackend({ tfBackend: 'cpu' })) as unknown as Backend),
  ];
}

export function disposeAll(backends: readonly ParityBackend[]): void {
  for (const b of backends) b.backend?.dispose();
}
