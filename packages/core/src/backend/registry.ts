/**
 * Backend registry and selection. Backend packages register a factory from their `./register` entry;
 * users pick one by name, by 'auto', or pass an instance (always allowed, so tests need no global state).
 */
import { BackendError } from '../errors.js';
import type { Backend } from './backend.js';

export type BackendName = 'cpu' | 'webgpu' | 'tfjs' | 'auto';
export type BackendSpec = BackendName | (string & {}) | Backend;
type Factory = () => Promise<Backend> | Backend;

interface Registration {
  readonly factory: Factory;
  /** Higher is tried first by 'auto'; negative is never auto-picked. */
  readonly priority: number;
}

const registry = new Map<string, Registration>();

export function registerBackend(name: string, factory: Factory, options: { priority?: number } = {}): void {
  registry.set(name, { factory, priority: options.priority ?? 0 });
}

export function registeredBackends(): string[] {
  return [...registry.keys()];
}

export interface ResolvedBackend {
  readonly backend: Backend;
  /** Why this backend was chosen, e.g. "auto: webgpu (adapter found)" — worth printing. */
  readonly reason: string;
}

/**
 * Creates the backend a spec names. 'auto' tries registered backends by descending priority and takes the
 * first whose factory succeeds; the error lists every attempt when none does.
 */
export async function resolveBackend(spec: BackendSpec = 'auto'): Promise<ResolvedBackend> {
  if (typeof spec !== 'string') return { backend: spec, reason: `instance: ${spec.name}` };
  if (spec !== 'auto') {
    const reg = registry.get(spec);
    if (!reg) {
      throw new BackendError(
        `unknown backend '${spec}' (registered: ${registeredBackends().join(', ') || 'none'}; import '@dorajs/backend-${spec}/register')`,
      );
    }
    try {
      return { backend: await reg.factory(), reason: `requested: ${spec}` };
    } catch (e) {
      throw new BackendError(`backend '${spec}' could not start: ${(e as Error).message}`, { cause: e });
    }
  }
  const candidates = [...registry.entries()].filter(([, r]) => r.priority >= 0).sort((a, b) => b[1].priority - a[1].priority);
  const failures: string[] = [];
  let softwareFallback: { backend: Backend; name: string } | null = null;
  const after = () => (failures.length ? ` after ${failures.join('; ')}` : '');
  for (const [name, reg] of candidates) {
    let backend: Backend;
    try {
      backend = await reg.factory();
    } catch (e) {
      failures.push(`${name} unavailable (${(e as Error).message})`);
      continue;
    }
    // An emulated GPU loses to the real CPU backend; keep it only as a last resort.
    if (backend.capabilities.software && !softwareFallback) {
      softwareFallback = { backend, name };
      failures.push(`${name} skipped (software device)`);
      continue;
    }
    softwareFallback?.backend.dispose();
    return { backend, reason: `auto: ${name}${after()}` };
  }
  if (softwareFallback)
    return { backend: softwareFallback.backend, reason: `auto: ${softwareFallback.name} (software device; nothing else could start)` };
  throw new BackendError(`no backend could start: ${failures.join('; ') || 'none registered'}`);
}
