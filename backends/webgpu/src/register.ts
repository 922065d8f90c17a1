/** Side-effect entry: makes 'webgpu' available to `resolveBackend` (priority 10, above the CPU backend). */
import { registerBackend } from '@dorajs/core';
import { createWebGpuBackend } from './backend.js';

registerBackend('webgpu', () => createWebGpuBackend(), { priority: 10 });
