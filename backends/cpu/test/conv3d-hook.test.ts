/**
 * Core builds conv3d from conv2d kernels unless a backend brings its own (the optional `conv3d`,
 * `conv3dBackpropInput`, `conv3dBackpropFilter`). A CPU backend given float64 reference kernels — an
 * implementation independent of the composite — must be the one core calls, in forward and backward, and give
 * what the composite gives; the conformance suite's conv3d cases and the conv3d gradient check run on it.
 */
import { autogradTier, fusedTier, HOST_TOLERANCE, hostMath, relativeError, runConformanceCase } from '@dorajs/backend-conformance';
import { backward, type Conv3dParams, ops, type TensorInfo, tensor, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { CpuBackend, type CpuStorage, createCpuBackend } from '../src/index.js';

/** The js-kernel CPU backend plus conv3d kernels computed in float64 on the host, counting their calls. */
class Conv3dCpuBackend extends CpuBackend {
  readonly calls = { forward: 0, input: 0, filter: 0 };
  constructor() {
    super({ kernels: 'js' });
  }
  private f32(values: Float64Array, shape: readonly number[]): CpuStorage {
    return this.upload(Float32Array.from(values), shape, 'float32');
  }
  conv3d(x: TensorInfo<CpuStorage>, w: TensorInfo<CpuStorage>, p: Conv3dParams, outShape: readonly number[]): CpuStorage {
    this.calls.forward++;
    return this.f32(hostMath.convHost(x.data.values, x.shape, w.data.values, w.shape, p).value, outShape);
  }
  conv3dBackpropInput(dy: TensorInfo<CpuStorage>, w: TensorInfo<CpuStorage>, p: Conv3dParams, xShape: readonly number[]): CpuStorage {
    this.calls.input++;
    return this.f32(hostMath.convInputGradHost(dy.data.values, w.data.values, w.shape, xShape, p).value, xShape);
  }
  conv3dBackpropFilter(x: TensorInfo<CpuStorage>, dy: TensorInfo<CpuStorage>, p: Conv3dParams, wShape: readonly number[]): CpuStorage {
    this.calls.filter++;
    return this.f32(hostMath.convFilterGradHost(x.data.values, x.shape, dy.data.values, wShape, p).value, wShape);
  }
}

const X = [2, 4, 5, 6, 5];
const W = [6, 2, 3, 2, 3];
const OPTIONS = { stride: [2, 1, 2], padding: [1, 0, 1], dilation: [1, 2, 1], groups: 2 };

function values(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** y = conv3d(x, w, bias) and the gradients of sum(y ⊙ r) for x, w and bias. */
async function run(backend: CpuBackend) {
  const x = tensor(
    values(
      X.reduce((a, b) => a * b),
      1,
    ),
    X,
    { backend, requiresGrad: true },
  );
  const w = tensor(
    values(
      W.reduce((a, b) => a * b),
      2,
    ),
    W,
    { backend, requiresGrad: true },
  );
  const bias = tensor(values(6, 3), [6], { backend, requiresGrad: true });
  const y = tidy(() => ops.conv3d(x, w, bias, OPTIONS));
  const r = tensor(values(y.size, 4), y.shape, { backend });
  tidy(() => backward(ops.sum(ops.mul(y, r))));
  const out = { y: await y.float32(), dx: await x.grad!.float32(), dw: await w.grad!.float32(), db: await bias.grad!.float32() };
  for (const t of [x, w, bias, y, r]) t.dispose();
  return out;
}

describe('conv3d: a backend may bring its own kernels', () => {
  it('core calls them in forward and backward, and they agree with the composite', async () => {
    const hooked = new Conv3dCpuBackend();
    const got = await run(hooked);
    expect(hooked.calls).toEqual({ forward: 1, input: 1, filter: 1 });
    const composite = await run(createCpuBackend({ kernels: 'js' }));
    for (const k of ['y', 'dx', 'dw', 'db'] as const) expect(relativeError(got[k], composite[k]), k).toBeLessThanOrEqual(1e-5);
  });

  it("the conformance suite's conv3d cases and gradient check run on them", async () => {
    const backend = new Conv3dCpuBackend();
    const cases = [
      ...fusedTier.cases.filter((c) => c.id.startsWith('fused/conv3d.')),
      ...autogradTier.cases.filter((c) => c.id === 'autograd/conv3d'),
    ];
    expect(cases.length).toBe(7);
    for (const c of cases) {
      expect(
        await runConformanceCase(c, { backend, reference: async () => createCpuBackend({ kernels: 'js' }), tolerance: HOST_TOLERANCE }),
        c.id,
      ).toEqual({});
    }
    expect(backend.calls.forward).toBeGreaterThan(2);
  });

  it('without them the fused cases skip with the reason', async () => {
    const c = fusedTier.cases.find((k) => k.id === 'fused/conv3d.plain.forward')!;
    const result = await runConformanceCase(c, {
      backend: createCpuBackend(),
      reference: async () => createCpuBackend(),
      tolerance: HOST_TOLERANCE,
    });
    expect(result.skipped).toMatch(/no conv3d kernels/);
  });
});
