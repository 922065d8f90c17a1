/** Side-effect entry: `import '@dorajs/backend-cpu/register'` makes 'cpu' (and 'auto' without a GPU) resolvable. */
import { registerBackend } from '@dorajs/core';
import { loadCpuBackend } from './load.js';

// The backend is created when resolved (asynchronously), so the kernel emitter is a lazy chunk here too.
registerBackend('cpu', () => loadCpuBackend(), { priority: 0 });
