/** Side-effect entry: makes `--backend tfjs` / `resolveBackend('tfjs')` work. Never picked by 'auto'. */
import { registerBackend } from '@dorajs/core';
import { createTfjsBackend } from './index.js';

registerBackend('tfjs', () => createTfjsBackend(), { priority: -1 });
