import { describe, expect, it } from 'vitest';
import { registeredBackends, resolveBackend } from '@dorajs/core';
import '../src/register.js';
import { TfjsBackend } from '../src/index.js';

describe('@dorajs/backend-tfjs/register', () => {
  it('registers tfjs by name, never for auto', async () => {
    expect(registeredBackends()).toContain('tfjs');
    const { backend, reason } = await resolveBackend('tfjs');
    expect(backend).toBeInstanceOf(TfjsBackend);
    expect(backend.name).toBe('tfjs');
    expect(reason).toBe('requested: tfjs');
    await expect(resolveBackend('auto')).rejects.toThrow(/none registered|no backend could start/);
    backend.dispose();
  });
});
