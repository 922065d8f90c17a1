/** Side-effect entry: `import '@dorajs/backend-cpu/register'` makes 'cpu' (and 'auto' without a GPU) resolvable. */
import { registerBackend } from '@dorajs/core';
import { createCpuBackend } from './cpu-backend.js';

registerBackend('cpu', () => createCpuBackend(), { priority: 0 });
