/**
 * Ephemeral GPU offload: run a DoRA-heavy computation (weight norms, merges) on another backend while the
 * model stays where it is. Inputs are copied there, the result is copied back, and every temporary on the
 * offload backend is released before returning — so it holds memory only for the duration of one layer.
 */
import { type Backend, noGrad, registeredBackends, resolveBackend, Tensor, tensor, tidy } from '@dorajs/core';
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

/** Tensors by name, nested in plain objects and arrays: what moves between backends. */
export type TensorTree = Tensor | readonly TensorTree[] | { readonly [name: string]: TensorTree | undefined };

/** Every tensor of `tree`, in a stable order. */
function leaves(tree: TensorTree, into: Tensor[] = []): Tensor[] {
  if (tree instanceof Tensor) into.push(tree);
  else if (Array.isArray(tree)) for (const t of tree) leaves(t, into);
  else for (const t of Object.values(tree)) if (t !== undefined) leaves(t, into);
  return into;
}

/** `tree` with each tensor replaced by `f(tensor)`, same names and nesting. */
async function mapTree<T extends TensorTree>(tree: T, f: (t: Tensor) => Promise<Tensor>): Promise<T> {
  if (tree instanceof Tensor) return (await f(tree)) as T;
  if (Array.isArray(tree)) {
    const out: TensorTree[] = [];
    for (const t of tree as readonly TensorTree[]) out.push(await mapTree(t, f));
    return out as unknown as T;
  }
  const out: Record<string, TensorTree> = {};
  for (const [k, t] of Object.entries(tree)) if (t !== undefined) out[k] = await mapTree(t, f);
  return out as T;
}

/**
 * Runs `fn` on copies of `inputs` (tensors by name) on `offload` and returns its outputs, by name, copied
 * to `home`. Without an offload backend (or when it is `home` itself, or `home` is already off-host) `fn`
 * runs in place.
 */
export async function runOffloaded<I extends TensorTree, O extends TensorTree>(
  offload: Backend | null,
  home: Backend,
  inputs: I,
  fn: (inputs: I) => O,
): Promise<O> {
  if (!offload || offload === home || home.capabilities.offHost) return tidy(() => noGrad(() => fn(inputs)));
  const moved: Tensor[] = [];
  try {
    const there = await mapTree(inputs, async (t) => {
      const c = await copyToBackend(t, offload);
      if (c !== t) moved.push(c);
      return c;
    });
    const outputs = tidy(() => noGrad(() => fn(there)));
    try {
      return await mapTree(outputs, (t) => copyToBackend(t, home));
    } finally {
      for (const o of leaves(outputs)) o.dispose();
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
