/**
 * Finding a GPUDevice: an injected one, `navigator.gpu` in browsers, or Dawn (npm `webgpu`) in Node.
 * Dawn comes from the `#host` import, whose browser variant has none, and is loaded only when there is no `navigator.gpu`.
 */
import { WebGpuUnavailableError } from './errors.js';
import { type DawnModule, hostEnv, loadDawn } from '#host';

export interface DeviceRequest {
  /** A `GPU` to ask for adapters (defaults to `navigator.gpu`, else Dawn's). */
  readonly gpu?: GPU;
  readonly powerPreference?: GPUPowerPreference;
  /** Ask for the `subgroups` feature when the adapter has it (default true). */
  readonly subgroups?: boolean;
  /**
   * Ask for the `shader-f16` feature when the adapter has it (default true): float16 weights are then bound
   * as `array<f16>` and widened in registers (same results as the packed-u32 path without it).
   */
  readonly shaderF16?: boolean;
}

/** The optional features a device is asked for (each when the adapter has it). */
export interface FeatureWishes {
  readonly subgroups: boolean;
  readonly shaderF16: boolean;
}

export interface AcquiredDevice {
  readonly device: GPUDevice;
  /** How the device was found, e.g. "dawn default (vulkan)" or "dawn opengles compatibility". */
  readonly description: string;
  readonly adapterInfo: string;
  readonly features: ReadonlySet<string>;
}

// Dawn wants one instance per flag set per process; creating more leaks threads and can keep Node alive.
const dawnInstances = new Map<string, GPU>();

function dawnInstance(dawn: DawnModule, flags: string[]): GPU {
  const key = flags.join(',');
  let gpu = dawnInstances.get(key);
  if (!gpu) {
    gpu = dawn.create(flags);
    dawnInstances.set(key, gpu);
  }
  return gpu;
}

function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info as GPUAdapterInfo | undefined;
  if (!info) return 'unknown adapter';
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s);
  return parts.length ? parts.join(' / ') : 'unnamed adapter';
}

/** Every numeric limit of the adapter, so compatibility-mode devices do not fall back to the low defaults. */
function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const limits: Record<string, number> = {};
  // GPUSupportedLimits exposes its values as prototype getters, so enumerate with for…in.
  for (const key in adapter.limits) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') limits[key] = value;
  }
  return limits;
}

export async function deviceFromAdapter(adapter: GPUAdapter, description: string, wants: FeatureWishes): Promise<AcquiredDevice> {
  const requiredFeatures: GPUFeatureName[] = [];
  if (wants.subgroups && adapter.features.has('subgroups')) requiredFeatures.push('subgroups' as GPUFeatureName);
  if (wants.shaderF16 && adapter.features.has('shader-f16')) requiredFeatures.push('shader-f16');
  const device = await adapter.requestDevice({ requiredLimits: adapterLimits(adapter), requiredFeatures });
  return {
    device,
    description,
    adapterInfo: describeAdapter(adapter),
    features: new Set([...device.features]),
  };
}

async function tryAdapter(
  gpu: GPU,
  options: GPURequestAdapterOptions,
  description: string,
  attempts: string[],
  wants: FeatureWishes,
): Promise<AcquiredDevice | null> {
  try {
    const adapter = await gpu.requestAdapter(options);
    if (!adapter) {
      attempts.push(`${description}: no adapter`);
      return null;
    }
    return await deviceFromAdapter(adapter, description, wants);
  } catch (e) {
    attempts.push(`${description}: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Tries, in order: the given `gpu` or `navigator.gpu` (default, then compatibility feature level); in Node,
 * Dawn's default backend (Vulkan/Metal/D3D12), then Dawn's OpenGL ES backend in compatibility mode (Mesa's
 * llvmpipe on machines without a GPU). Throws `WebGpuUnavailableError` listing every attempt.
 */
export async function acquireDevice(request: DeviceRequest = {}): Promise<AcquiredDevice> {
  const attempts: string[] = [];
  const wants: FeatureWishes = { subgroups: request.subgroups ?? true, shaderF16: request.shaderF16 ?? true };
  const base: GPURequestAdapterOptions = request.powerPreference ? { powerPreference: request.powerPreference } : {};
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const explicit = request.gpu ?? nav?.gpu;
  if (explicit) {
    const found =
      (await tryAdapter(explicit, base, 'navigator.gpu', attempts, wants)) ??
      (await tryAdapter(explicit, { ...base, featureLevel: 'compatibility' }, 'navigator.gpu compatibility', attempts, wants));
    if (found) return found;
    throw new WebGpuUnavailableError(attempts);
  }
  if (!loadDawn) {
    attempts.push('navigator.gpu is undefined (WebGPU needs a secure context and a supporting browser)');
    throw new WebGpuUnavailableError(attempts);
  }
  let dawn: DawnModule;
  try {
    dawn = await loadDawn();
  } catch (e) {
    // A missing optional package is the common case: one short line, no node_modules paths.
    const missing = (e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND';
    attempts.push(
      missing
        ? "the optional 'webgpu' package (Dawn) is not installed (npm i webgpu)"
        : `Dawn (npm 'webgpu') could not be loaded: ${(e as Error).message.split('\n')[0]}`,
    );
    throw new WebGpuUnavailableError(attempts);
  }
  const native = await tryAdapter(dawnInstance(dawn, []), base, 'dawn default', attempts, wants);
  if (native) return native;
  const gles = await tryAdapter(
    dawnInstance(dawn, ['backend=opengles']),
    { ...base, featureLevel: 'compatibility' },
    'dawn opengles compatibility',
    attempts,
    wants,
  );
  if (gles) return gles;
  if (!hostEnv('EGL_PLATFORM'))
    attempts.push('hint: without a GPU set EGL_PLATFORM=surfaceless and install Mesa (libegl-mesa0, libgl1-mesa-dri)');
  throw new WebGpuUnavailableError(attempts);
}
