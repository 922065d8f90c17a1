/**
 * The WebGPU backend for a test file (Dawn; llvmpipe with EGL_PLATFORM=surfaceless on machines without a
 * GPU). Without an adapter the file's tests skip locally (reason printed) but fail in CI, as the WebGPU
 * backend's own tests do.
 */
import { createWebGpuBackend, type WebGpuBackend } from '@dorajs/backend-webgpu';
import { afterAll, beforeAll, type TestContext } from 'vitest';

/** Creates the backend before the file's tests and disposes it after; call `gpu(context)` in each test. */
export function useWebGpu(): (context: TestContext) => WebGpuBackend {
  let gpu: WebGpuBackend | null = null;
  let skipReason = '';
  beforeAll(async () => {
    try {
      gpu = await createWebGpuBackend();
    } catch (error) {
      if (process.env.CI === 'true')
        throw new Error(`CI requires a WebGPU adapter (EGL_PLATFORM=surfaceless): ${(error as Error).message}`);
      skipReason = `no WebGPU adapter, skipping: ${(error as Error).message}`;
      console.warn(skipReason);
    }
  });
  afterAll(() => gpu?.dispose());
  return (context) => {
    if (!gpu) context.skip(skipReason);
    return gpu!;
  };
}
