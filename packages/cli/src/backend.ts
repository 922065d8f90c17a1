/**
 * Picks the compute backend for a command and says which on stderr. Backends are registered lazily so a
 * missing optional one (Dawn, tfjs) only matters when asked for.
 */
import { type Backend, registerBackend, resolveBackend } from '@dorajs/core';
import { UsageError } from './errors.js';

const NAMES = ['cpu', 'webgpu', 'tfjs', 'auto'] as const;
let registered = false;

function registerAll(): void {
  if (registered) return;
  registered = true;
  // Every core: the wasm kernels split large matmuls and norms across worker threads.
  registerBackend('cpu', async () => (await import('@dorajs/backend-cpu')).createCpuBackend({ threads: 'auto' }), { priority: 0 });
  registerBackend(
    'webgpu',
    async () => {
      const mod = (await import(/* optional */ '@dorajs/backend-webgpu' as string)) as { createWebGpuBackend(): Promise<Backend> };
      return mod.createWebGpuBackend();
    },
    { priority: 10 },
  );
  registerBackend(
    'tfjs',
    async () => {
      const mod = (await import(/* optional */ '@dorajs/backend-tfjs' as string)) as { createTfjsBackend(): Promise<Backend> };
      return mod.createTfjsBackend();
    },
    { priority: -1 },
  );
}

export async function selectBackend(spec: unknown, log: (line: string) => void): Promise<Backend> {
  if (typeof spec !== 'string' || !(NAMES as readonly string[]).includes(spec)) {
    throw new UsageError(`--backend must be one of ${NAMES.join(', ')}, got '${String(spec)}'`);
  }
  registerAll();
  const { backend, reason } = await resolveBackend(spec);
  log(`dora: backend ${backend.name} (${reason})\n`);
  return backend;
}
