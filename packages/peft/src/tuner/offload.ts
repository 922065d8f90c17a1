/**
 * Ephemeral GPU offload: run a DoRA-heavy computation (weight norms, merges) on another backend while the
 * model stays where it is. Inputs are copied there, the result is copied back, and every temporary on the
 * offload backend is released before returning — so it holds memory only for the duration of one layer.
 */
import { type Backend, noGrad, registeredBackends, resolveBackend, type Tensor, tensor, tidy } from '@dorajs/core';
import type { LoraConfig } from '../config/lora-config.js';

/** `true` → the WebGPU backend (resolveBackend('webgpu')); a Backend → itself; false → none. */
export async function resolveOffloadBackend(spec: boolean | Backend | undefined): Promise<Backend | null> {
  if (!spec) return null;
  if (spec === true) {
    if (!registeredBackends().includes('webgpu')) await registerWebGpuIfInstalled();
    return (await resolveBackend('webgpu')).backend;
  }
  return spec;
}

/**
 * `true` means "the WebGPU backend": register it on first use when @dorajs/backend-webgpu is installed, so
 * callers need no side-effect import. Without the package, resolveBackend's error says how to add it.
 */
async function registerWebGpuIfInstalled(): Promise<void> {
  const specifier = '@dorajs/backend-webgpu/register';
  try {
    await import(/* optional peer */ specifier);
  } catch {
    // not installed: resolveBackend('webgpu') raises a BackendError naming the package to install
  }
}

export async function copyToBackend(t: Tensor, backend: Backend): Promise<Tensor> {
  if (t.backend === backend) return t;
  return tensor(await t.data(), [...t.shape], { backend, dtype: t.dtype });
}

/**
 * Runs `fn` on copies of `inputs` on `offload` and returns its outputs copied to `home`. Without an offload
 * backend (or when it is `home` itself, or `home` is already off-host) `fn` runs in place.
 */
export async function runOffloaded(
  offload: Backend | null,
  home: Backend,
  inputs: readonly Tensor[],
  fn: (inputs: readonly Tensor[]) => Tensor[],
): Promise<Tensor[]> {
  if (!offload || offload === home || home.capabilities.offHost) return tidy(() => noGrad(() => fn(inputs)));
  const moved: Tensor[] = [];
  try {
    for (const t of inputs) moved.push(await copyToBackend(t, offload));
    const outputs = tidy(() => noGrad(() => fn(moved)));
    try {
      const back: Tensor[] = [];
      for (const o of outputs) back.push(await copyToBackend(o, home));
      return back;
    } finally {
      for (const o of outputs) o.dispose();
    }
  } finally {
    for (const t of moved) t.dispose();
  }
}

/** The offload request of an adapter's config, resolved once per value (true → one shared WebGPU backend). */
export class OffloadResolver {
  private webgpu: Promise<Backend | null> | null = null;

  async forConfig(config: LoraConfig): Promise<Backend | null> {
    const spec = config.ephemeralGpuOffload;
    if (spec !== true) return resolveOffloadBackend(spec);
    this.webgpu ??= resolveOffloadBackend(true);
    return this.webgpu;
  }
}
