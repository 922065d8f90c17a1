/**
 * Tier: DoRA invariants on this backend, for Linear, Conv1D (fan-in-fan-out), Embedding and Conv2d:
 * B = 0 ⇒ the base output; merged ≈ unmerged; unmerge restores W; the zero-norm guard; the magnitude
 * receives a non-zero gradient; analytic gradients of a whole DoRA layer match finite differences.
 */
import { describe, expect, it } from 'vitest';
import {
  backward, type Backend, composeAdapter, deltaWeight, doraMerge, doraUnmerge, doraWeightNorm, type LayerGeometry, loraBranch, magnitudeScale,
  ops, Random, type Tensor, tensor, tidy,
} from '@dorajs/core';
import { gradCheck } from './grad-check.js';
import { relativeError } from './peft-fixtures.js';

interface Kind {
  readonly id: string;
  readonly geo: LayerGeometry;
  /** Shapes of x, W, A, B, bias (null: none) for out = 5, in = 7, r = 3. */
  readonly x: number[];
  readonly w: number[];
  readonly a: number[];
  readonly b: number[];
  readonly bias: number[] | null;
  readonly integerInput?: number;
  readonly out: number;
}

const CONV = { stride: 1, padding: 1, dilation: 1, groups: 1 } as const;
const KINDS: Kind[] = [
  { id: 'linear', geo: { kind: 'linear' }, x: [2, 3, 7], w: [5, 7], a: [3, 7], b: [5, 3], bias: [5], out: 5 },
  { id: 'conv1d', geo: { kind: 'linear', fanInFanOut: true }, x: [4, 7], w: [7, 5], a: [3, 7], b: [5, 3], bias: [5], out: 5 },
  { id: 'embedding', geo: { kind: 'embedding' }, x: [2, 4], w: [7, 5], a: [3, 7], b: [5, 3], bias: null, integerInput: 7, out: 5 },
  { id: 'conv2d', geo: { kind: 'conv2d', groups: 1 }, x: [2, 3, 4, 4], w: [5, 3, 3, 3], a: [3, 3, 3, 3], b: [5, 3, 1, 1], bias: [5], out: 5 },
];

/** Base result without bias in the layer's own operator. */
function baseOf(k: Kind, x: Tensor, w: Tensor): Tensor {
  switch (k.geo.kind) {
    case 'embedding':
      return ops.embedding(w, x);
    case 'conv2d':
      return ops.conv2d(x, w, null, CONV);
    default:
      return k.geo.fanInFanOut ? ops.matmulLastAxis(x, w, false) : ops.linear(x, w, null);
  }
}

function doraForward(k: Kind, x: Tensor, w: Tensor, a: Tensor, b: Tensor, m: Tensor, bias: Tensor | null, s: number): Tensor {
  const g = magnitudeScale(m, doraWeightNorm(k.geo, w, a, b, s));
  return composeAdapter(k.geo, baseOf(k, x, w), loraBranch(k.geo, x, a, b, k.geo.kind === 'conv2d' ? CONV : undefined), s, g, bias);
}

function mergedForward(k: Kind, x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const y = baseOf(k, x, w);
  if (!bias) return y;
  return k.geo.kind === 'conv2d' ? ops.add(y, ops.reshape(bias, [1, -1, 1, 1])) : ops.add(y, bias);
}

function make(k: Kind, backend: Backend, seed: number, opts: { zeroB?: boolean; zeroRow?: number } = {}) {
  const rng = new Random(seed);
  const n = (s: number[]) => s.reduce((p, d) => p * d, 1);
  const rand = (s: number[]) => rng.fillUniform(n(s), -1, 1);
  const x = k.integerInput
    ? tensor(Int32Array.from({ length: n(k.x) }, () => Math.floor(rng.next() * k.integerInput!)), k.x, { backend })
    : tensor(rand(k.x), k.x, { backend });
  const wv = rand(k.w);
  const bv = opts.zeroB ? new Float32Array(n(k.b)) : rand(k.b);
  if (opts.zeroRow !== undefined) zeroFeature(k, wv, bv, opts.zeroRow);
  return {
    x,
    xValues: k.integerInput ? null : (x as Tensor),
    w: tensor(wv, k.w, { backend }),
    a: tensor(rand(k.a), k.a, { backend }),
    b: tensor(bv, k.b, { backend }),
    m: tensor(rng.fillUniform(k.out, 0.5, 2), [k.out], { backend }),
    bias: k.bias ? tensor(rand(k.bias), k.bias, { backend }) : null,
  };
}

/** Zeroes output feature `f` of W and of B so that ‖W + s·B·A‖ of that feature is exactly 0. */
function zeroFeature(k: Kind, w: Float32Array, b: Float32Array, f: number): void {
  const [d0, d1] = k.w as [number, number];
  const columns = k.geo.kind === 'embedding' || k.geo.fanInFanOut;
  if (columns) for (let i = 0; i < d0; i++) w[i * d1 + f] = 0;
  else {
    const per = w.length / k.out;
    w.fill(0, f * per, (f + 1) * per);
  }
  const rb = b.length / k.out;
  b.fill(0, f * rb, (f + 1) * rb);
}

export interface DoraTierOptions {
  readonly create: () => Promise<Backend> | Backend;
  /** Relative error bound for equalities that hold up to float32 rounding. */
  readonly tolerance: number;
  readonly skip?: Readonly<Record<string, string>>;
}

export function defineDoraInvariantsTier(opts: DoraTierOptions): void {
  const s = 1.5;
  describe('tier: DoRA invariants', () => {
    for (const k of KINDS) {
      const test = (name: string, fn: () => Promise<void>) => {
        const id = `dora/${k.id}/${name}`;
        const reason = opts.skip?.[id];
        (reason ? it.skip : it)(`${id}${reason ? ` — skipped: ${reason}` : ''}`, fn);
      };

      test('zero-B-is-base', async () => {
        const backend = await opts.create();
        const t = make(k, backend, 11, { zeroB: true });
        // m initialised as PEFT does: ‖W + s·B·A‖ = ‖W‖
        const m = doraWeightNorm(k.geo, t.w, t.a, t.b, s);
        const y = tidy(() => doraForward(k, t.x, t.w, t.a, t.b, m, t.bias, s));
        const base = tidy(() => mergedForward(k, t.x, t.w, t.bias));
        expect(relativeError(await y.float32(), await base.float32())).toBeLessThanOrEqual(opts.tolerance);
      });

      test('merged-equals-unmerged', async () => {
        const backend = await opts.create();
        const t = make(k, backend, 12);
        const y = tidy(() => doraForward(k, t.x, t.w, t.a, t.b, t.m, t.bias, s));
        const merged = tidy(() => doraMerge(k.geo, t.w, deltaWeight(k.geo, t.w, t.a, t.b, s), t.m, doraWeightNorm(k.geo, t.w, t.a, t.b, s)));
        const ym = tidy(() => mergedForward(k, t.x, merged, t.bias));
        expect(relativeError(await ym.float32(), await y.float32())).toBeLessThanOrEqual(opts.tolerance);
      });

      test('unmerge-restores-weight', async () => {
        const backend = await opts.create();
        const t = make(k, backend, 13);
        const restored = tidy(() => {
          const delta = deltaWeight(k.geo, t.w, t.a, t.b, s);
          const norm = doraWeightNorm(k.geo, t.w, t.a, t.b, s);
          return doraUnmerge(k.geo, doraMerge(k.geo, t.w, delta, t.m, norm), delta, t.m, norm);
        });
        expect(relativeError(await restored.float32(), await t.w.float32())).toBeLessThanOrEqual(opts.tolerance * 10);
      });

      test('zero-norm-guard', async () => {
        const backend = await opts.create();
        const f = 2;
        const t = make(k, backend, 14, { zeroRow: f });
        const norm = await doraWeightNorm(k.geo, t.w, t.a, t.b, s).float32();
        expect(norm[f]).toBe(0);
        const y = await tidy(() => doraForward(k, t.x, t.w, t.a, t.b, t.m, t.bias, s)).float32();
        expect(y.every(Number.isFinite)).toBe(true);
        // feature f of the output is the bias alone (or 0 without bias)
        const biasF = t.bias ? (await t.bias.float32())[f]! : 0;
        const featureAxisLast = k.geo.kind !== 'conv2d';
        const plane = featureAxisLast ? 1 : k.x[2]! * k.x[3]!;
        for (let i = 0; i < y.length; i++) {
          const feature = featureAxisLast ? i % k.out : Math.floor(i / plane) % k.out;
          if (feature === f) expect(y[i]).toBeCloseTo(biasF, 6);
        }
        const delta = deltaWeight(k.geo, t.w, t.a, t.b, s);
        const n = doraWeightNorm(k.geo, t.w, t.a, t.b, s);
        const merged = doraMerge(k.geo, t.w, delta, t.m, n);
        expect((await merged.float32()).every(Number.isFinite)).toBe(true);
        const restored = doraUnmerge(k.geo, merged, delta, t.m, n);
        expect(relativeError(await restored.float32(), await t.w.float32())).toBeLessThanOrEqual(opts.tolerance * 10);
      });

      test('magnitude-gets-gradient', async () => {
        const backend = await opts.create();
        const t = make(k, backend, 15);
        const m = tensor(await t.m.float32(), [k.out], { backend, requiresGrad: true });
        const loss = ops.sum(ops.square(doraForward(k, t.x, t.w, t.a, t.b, m, t.bias, s)));
        backward(loss);
        const g = await m.grad!.float32();
        expect(g.some((v) => v !== 0)).toBe(true);
        expect(g.every(Number.isFinite)).toBe(true);
      });

      test('gradients-match-finite-differences', async () => {
        const backend = await opts.create();
        const t = make(k, backend, 16);
        const values = async (x: Tensor) => ({ values: await x.float32(), shape: [...x.shape] });
        const inputs = [await values(t.a), await values(t.b), await values(t.m)];
        // The norm is a constant in DoRA's backward (paper §4.3), so the finite differences hold it fixed too.
        const norm = doraWeightNorm(k.geo, t.w, t.a, t.b, s);
        const conv = k.geo.kind === 'conv2d' ? CONV : undefined;
        const err = await gradCheck(
          backend,
          ([a, b, m]) => composeAdapter(k.geo, baseOf(k, t.x, t.w), loraBranch(k.geo, t.x, a!, b!, conv), s, magnitudeScale(m!, norm), t.bias),
          inputs,
          { probes: 6 },
        );
        expect(err, `worst |fd − analytic| / max|grad| = ${err}`).toBeLessThanOrEqual(2e-3);
      });
    }
  });
}
