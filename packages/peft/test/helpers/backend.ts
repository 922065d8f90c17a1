import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend } from '@dorajs/core';

export function cpu(): Backend {
  return createCpuBackend() as unknown as Backend;
}
