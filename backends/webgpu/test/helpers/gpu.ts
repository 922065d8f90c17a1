/**
 * One backend per test file. Without an adapter the tests are skipped locally (with the reason printed)
 * but fail in CI (CI=true), where llvmpipe must be present.
 */
import { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from '../../src/index.js';

export interface GpuSetup {
  readonly backend: WebGpuBackend | null;
  readonly skipReason: string;
}

export async function setupGpu(options: WebGpuBackendOptions = {}): Promise<GpuSetup> {
  try {
    const backend = await createWebGpuBackend(options);
    return { backend, skipReason: '' };
  } catch (e) {
    if (process.env.CI === 'true') {
      throw new Error(`CI requires a WebGPU adapter (Mesa llvmpipe with EGL_PLATFORM=surfaceless): ${(e as Error).message}`);
    }
    const reason = `no WebGPU adapter, skipping: ${(e as Error).message}`;
    console.warn(reason);
    return { backend: null, skipReason: reason };
  }
}
