/**
 * Tier: DoRA invariants on this backend, for Linear, Conv1D (fan-in-fan-out), Embedding and Conv2d:
 * B = 0 ⇒ the base output; merged ≈ unmerged; unmerge restores W; the zero-norm guard; the magnitude
 * receives a non-zero gradient; analytic gradients of a whole DoRA layer match finite differences.
 */
import {
  backward,
  type Backend,
  composeAdapter,
  deltaWeight,
  doraMerge,
  doraUnmerge,
  doraWeightNorm,
  type LayerGeometry,
  loraBranch,
  magnitudeScale,
  ops,
  Random,
  type Tensor,
  tensor,
  tidy,
} from '@dorajs/core';
import type { CaseContext, ConformanceCase, ConformanceTier } from '../types.js';
import { gradCheck } from './grad-check.js';
import { type Owned, withOwned } from './owned.js';
import { relativeError } from './relative-error.js';

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
  {
    id: 'conv2d',
    geo: { kind: 'conv2d', groups: 1 },
    x: [2, 3, 4, 4],
    w: [5, 3, 3, 3],
    a: [3, 3, 3, 3],
    b: [5, 3, 1, 1],
    bias: [5],
    out: 5,
  },
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

function make(k: Kind, backend: Backend, own: Owned, seed: number, opts: { zeroB?: boolean; zeroRow?: number } = {}) {
  const rng = new Random(seed);
  const n = (s: number[]) => s.reduce((p, d) => p * d, 1);
  const rand = (s: number[]) => rng.fillUniform(n(s), -1, 1);
  const x = k.integerInput
    ? tensor(
        Int32Array.from({ length: n(k.x) }, () => Math.floor(rng.next() * k.integerInput!)),
        k.x,
        { backend },
      )
    : tensor(rand(k.x), k.x, { backend });
  const wv = rand(k.w);
  const bv = opts.zeroB ? new Float32Array(n(k.b)) : rand(k.b);
  if (opts.zeroRow !== undefined) zeroFeature(k, wv, bv, opts.zeroRow);
  return {
    x: own.add(x),
    w: own.add(tensor(wv, k.w, { backend })),
    a: own.add(tensor(rand(k.a), k.a, { backend })),
    b: own.add(tensor(bv, k.b, { backend })),
    m: own.add(tensor(rng.fillUniform(k.out, 0.5, 2), [k.out], { backend })),
    bias: k.bias ? own.add(tensor(rand(k.bias), k.bias, { backend })) : null,
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

const S = 1.5;

async function expectRel(what: string, actual: Tensor, expected: Tensor, bound: number): Promise<void> {
  const e = relativeError(await actual.float32(), await expected.float32());
  if (!(e <= bound)) throw new Error(`${what}: relative error ${e} > ${bound}`);
}

type Check = (k: Kind, ctx: CaseContext, own: Owned) => Promise<void>;

const CHECKS: Record<string, { title: string; run: Check }> = {
  'zero-B-is-base': {
    title: 'B = 0 with m = ‖W‖ gives the base output',
    async run(k, ctx, own) {
      const t = make(k, ctx.backend, own, 11, { zeroB: true });
      const m = own.add(doraWeightNorm(k.geo, t.w, t.a, t.b, S));
      const y = own.add(tidy(() => doraForward(k, t.x, t.w, t.a, t.b, m, t.bias, S)));
      const base = own.add(tidy(() => mergedForward(k, t.x, t.w, t.bias)));
      await expectRel('DoRA output with B = 0 vs base', y, base, ctx.tolerance.rtol);
    },
  },
  'merged-equals-unmerged': {
    title: 'the merged weight gives the unmerged output',
    async run(k, ctx, own) {
      const t = make(k, ctx.backend, own, 12);
      const y = own.add(tidy(() => doraForward(k, t.x, t.w, t.a, t.b, t.m, t.bias, S)));
      const merged = own.add(
        tidy(() => doraMerge(k.geo, t.w, deltaWeight(k.geo, t.w, t.a, t.b, S), t.m, doraWeightNorm(k.geo, t.w, t.a, t.b, S))),
      );
      const ym = own.add(tidy(() => mergedForward(k, t.x, merged, t.bias)));
      await expectRel('merged vs unmerged output', ym, y, ctx.tolerance.rtol);
    },
  },
  'unmerge-restores-weight': {
    title: 'unmerge restores W',
    async run(k, ctx, own) {
      const t = make(k, ctx.backend, own, 13);
      const restored = own.add(
        tidy(() => {
          const delta = deltaWeight(k.geo, t.w, t.a, t.b, S);
          const norm = doraWeightNorm(k.geo, t.w, t.a, t.b, S);
          return doraUnmerge(k.geo, doraMerge(k.geo, t.w, delta, t.m, norm), delta, t.m, norm);
        }),
      );
      await expectRel('unmerged weight vs W', restored, t.w, ctx.tolerance.rtol * 10);
    },
  },
  'zero-norm-guard': {
    title: 'a feature whose norm is exactly 0 outputs the bias alone; merge stays finite and unmerge restores W',
    async run(k, ctx, own) {
      const f = 2;
      const t = make(k, ctx.backend, own, 14, { zeroRow: f });
      const norm = await own.add(doraWeightNorm(k.geo, t.w, t.a, t.b, S)).float32();
      if (norm[f] !== 0) throw new Error(`norm of feature ${f} is ${norm[f]}, expected exactly 0`);
      const y = await own.add(tidy(() => doraForward(k, t.x, t.w, t.a, t.b, t.m, t.bias, S))).float32();
      if (!y.every(Number.isFinite)) throw new Error('DoRA output has NaN/Inf where a norm is 0');
      const biasF = t.bias ? (await t.bias.float32())[f]! : 0;
      const featureAxisLast = k.geo.kind !== 'conv2d';
      const plane = featureAxisLast ? 1 : k.x[2]! * k.x[3]!;
      for (let i = 0; i < y.length; i++) {
        const feature = featureAxisLast ? i % k.out : Math.floor(i / plane) % k.out;
        if (feature === f && Math.abs(y[i]! - biasF) > 1e-6)
          throw new Error(`output ${i} of the zero-norm feature is ${y[i]}, expected the bias ${biasF}`);
      }
      const { merged, restored } = tidy(() => {
        const delta = deltaWeight(k.geo, t.w, t.a, t.b, S);
        const n = doraWeightNorm(k.geo, t.w, t.a, t.b, S);
        const mw = doraMerge(k.geo, t.w, delta, t.m, n);
        return { merged: mw, restored: doraUnmerge(k.geo, mw, delta, t.m, n) };
      });
      own.add(merged);
      own.add(restored);
      if (!(await merged.float32()).every(Number.isFinite)) throw new Error('merged weight has NaN/Inf where a norm is 0');
      await expectRel('unmerged weight vs W', restored, t.w, ctx.tolerance.rtol * 10);
    },
  },
  'magnitude-gets-gradient': {
    title: 'the magnitude receives a finite, non-zero gradient',
    async run(k, ctx, own) {
      const t = make(k, ctx.backend, own, 15);
      const m = own.add(tensor(await t.m.float32(), [k.out], { backend: ctx.backend, requiresGrad: true }));
      tidy(() => backward(ops.sum(ops.square(doraForward(k, t.x, t.w, t.a, t.b, m, t.bias, S)))));
      const g = await m.grad!.float32();
      if (!g.some((v) => v !== 0) || !g.every(Number.isFinite)) throw new Error(`magnitude gradient is ${Array.from(g).join(', ')}`);
    },
  },
  'gradients-match-finite-differences': {
    title: 'gradients of A, B and m match finite differences (with the norm held constant, as DoRA detaches it)',
    async run(k, ctx, own) {
      const t = make(k, ctx.backend, own, 16);
      const values = async (x: Tensor) => ({ values: await x.float32(), shape: [...x.shape] });
      const inputs = [await values(t.a), await values(t.b), await values(t.m)];
      const norm = own.add(doraWeightNorm(k.geo, t.w, t.a, t.b, S));
      const conv = k.geo.kind === 'conv2d' ? CONV : undefined;
      const err = await gradCheck(
        ctx.backend,
        ([a, b, m]) =>
          composeAdapter(k.geo, baseOf(k, t.x, t.w), loraBranch(k.geo, t.x, a!, b!, conv), S, magnitudeScale(m!, norm), t.bias),
        inputs,
        { probes: 6 },
      );
      if (!(err <= 2e-3)) throw new Error(`worst |fd − analytic| / max|grad| = ${err} > 2e-3`);
    },
  },
};

export const doraInvariantsTier: ConformanceTier = {
  id: 'dora',
  title: 'DoRA invariants for Linear, Conv1D (fan-in-fan-out), Embedding and Conv2d',
  cases: KINDS.flatMap((k) =>
    Object.entries(CHECKS).map(
      ([name, check]): ConformanceCase => ({
        id: `dora/${k.id}.${name}`,
        title: check.title,
        run: (ctx) => withOwned((own) => check.run(k, ctx, own)),
      }),
    ),
  ),
};
