/**
 * The conformance suite must fail on broken kernels. Each mutant is the CPU backend with one realistic bug;
 * the case that targets it must reject, and a control case must still pass (the bug is what fails it).
 */
import { type ConformanceCase, HOST_TOLERANCE, kernelTiers, runConformanceCase } from '@dorajs/backend-conformance';
import type { Backend, TensorInfo, UnaryOp } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { type CpuBackend, createCpuBackend } from '../src/index.js';

const cases = new Map<string, ConformanceCase>(kernelTiers.flatMap((t) => t.cases.map((c) => [c.id, c] as const)));

function kase(id: string): ConformanceCase {
  const c = cases.get(id);
  if (!c) throw new Error(`no case ${id}`);
  return c;
}

/** The CPU backend with some methods replaced (the rest inherited, so they share its storage). */
function mutant(patch: (base: CpuBackend) => Partial<Backend>): Backend {
  const base = createCpuBackend();
  return Object.assign(Object.create(base) as Backend, patch(base));
}

const run = (id: string, backend: Backend) =>
  runConformanceCase(kase(id), { backend, reference: () => Promise.resolve(createCpuBackend()), tolerance: HOST_TOLERANCE });

/** Reads a result back synchronously for the mutants (the CPU backend resolves downloads immediately). */
const values = (h: unknown) => (h as { values: Float32Array }).values;

interface Mutation {
  readonly bug: string;
  readonly backend: () => Backend;
  readonly fails: readonly string[];
  readonly passes: string;
}

const MUTATIONS: readonly Mutation[] = [
  {
    bug: 'matmul ignores transposeB',
    backend: () =>
      mutant((b) => ({
        matmul: (x: TensorInfo, y: TensorInfo, o, s) =>
          b.matmul(
            x as never,
            (o.transposeB ? { ...y, shape: [...y.shape.slice(0, -2), y.shape.at(-1)!, y.shape.at(-2)!] } : y) as never,
            { transposeA: !!o.transposeA },
            s,
          ),
      })),
    fails: ['primitive/matmul.odd.nt', 'vs-reference/matmul.gemv.nt'],
    passes: 'primitive/matmul.odd.nn',
  },
  {
    bug: 'matmul skips zero entries of a (0·NaN never computed)',
    backend: () =>
      mutant((b) => ({
        matmul: (x: TensorInfo, y: TensorInfo, o, s) => {
          const h = b.matmul(x as never, y as never, o, s);
          const out = values(h);
          for (let i = 0; i < out.length; i++) if (Number.isNaN(out[i]!)) out[i] = 0;
          return h;
        },
      })),
    fails: ['primitive/matmul.nan-through-zero'],
    passes: 'primitive/matmul.hand',
  },
  {
    bug: 'relu maps NaN to 0',
    backend: () =>
      mutant((b) => ({
        unary: (op: UnaryOp, x: TensorInfo) => {
          const h = b.unary(op, x as never);
          if (op === 'relu') values(h).forEach((v, i, a) => (a[i] = Number.isNaN(v) ? 0 : v));
          return h;
        },
      })),
    fails: ['primitive/unary.relu'],
    passes: 'primitive/unary.exp',
  },
  {
    bug: 'gelu uses the tanh approximation',
    backend: () => mutant((b) => ({ unary: (op: UnaryOp, x: TensorInfo) => b.unary(op === 'gelu' ? 'geluTanh' : op, x as never) })),
    fails: ['primitive/unary.gelu', 'vs-reference/unary.gelu'],
    passes: 'primitive/unary.geluTanh',
  },
  {
    bug: 'softmax without the max shift',
    backend: () =>
      mutant((b) => ({
        softmax: (x: TensorInfo, log: boolean) => {
          const h = b.softmax(x as never, log);
          const xs = values(x.data);
          const n = x.shape.at(-1)!;
          const out = values(h);
          for (let r = 0; r < out.length / n; r++) {
            let s = 0;
            for (let i = 0; i < n; i++) s += Math.exp(xs[r * n + i]!);
            for (let i = 0; i < n; i++) out[r * n + i] = log ? xs[r * n + i]! - Math.log(s) : Math.exp(xs[r * n + i]!) / s;
          }
          return h;
        },
      })),
    fails: ['primitive/softmax.large-logits', 'primitive/logSoftmax.large-logits'],
    passes: 'primitive/softmax.random',
  },
  {
    bug: 'scatterAdd overwrites repeated rows instead of summing',
    backend: () =>
      mutant((b) => ({
        scatterAdd: (idx: TensorInfo, upd: TensorInfo, rows: number) => {
          const h = b.scatterAdd(idx as never, upd as never, rows);
          const out = values(h);
          const ids = (idx.data as { values: Int32Array }).values;
          const u = values(upd.data);
          const cols = upd.shape.at(-1)!;
          ids.forEach((row, i) => out.set(u.subarray(i * cols, (i + 1) * cols), row * cols));
          return h;
        },
      })),
    fails: ['primitive/scatterAdd.repeated', 'vs-reference/scatterAdd'],
    passes: 'primitive/gather.repeated',
  },
  {
    bug: 'conv2d ignores dilation',
    backend: () =>
      mutant((b) => ({
        conv2d: (x: TensorInfo, w: TensorInfo, p, s) => {
          const plain = { ...p, dilation: [1, 1] as const };
          const yShape = [
            s[0]!,
            s[1]!,
            Math.floor((x.shape[2]! + 2 * p.padding[0] - w.shape[2]!) / p.stride[0]) + 1,
            Math.floor((x.shape[3]! + 2 * p.padding[1] - w.shape[3]!) / p.stride[1]) + 1,
          ];
          const h = b.conv2d(x as never, w as never, plain, yShape);
          if (yShape.every((d, i) => d === s[i])) return h;
          b.release(h);
          return b.fill(s, 0, 'float32');
        },
      })),
    fails: ['primitive/conv2d.dilation2.forward', 'primitive/conv2d.mixed.forward'],
    passes: 'primitive/conv2d.basic.forward',
  },
  {
    bug: 'a kernel leaks a temporary buffer',
    backend: () =>
      mutant((b) => ({
        affine: (x: TensorInfo, s: number, o: number) => {
          b.fill([4], 0, 'float32'); // never released
          return b.affine(x as never, s, o);
        },
      })),
    fails: ['primitive/affine'],
    passes: 'primitive/unary.neg',
  },
  {
    bug: 'weightNorm accumulates squares in float32',
    backend: () =>
      mutant((b) => ({
        weightNorm: (w: TensorInfo, a: TensorInfo, bb: TensorInfo, s: number, o) => {
          const h = b.weightNorm(w as never, a as never, bb as never, s, o);
          const [wv, av, bv] = [values(w.data), values(a.data), values(bb.data)];
          const [out, inF, r] = [bb.shape[0]!, a.shape[1]!, a.shape[0]!];
          const norms = values(h);
          for (let row = 0; row < out; row++) {
            let sum = 0;
            for (let i = 0; i < inF; i++) {
              let ba = 0;
              for (let j = 0; j < r; j++) ba += bv[row * r + j]! * av[j * inF + i]!;
              const v = Math.fround(wv[o.transposeW ? i * out + row : row * inF + i]! + s * ba);
              sum = Math.fround(sum + Math.fround(v * v));
            }
            norms[row] = Math.sqrt(sum);
          }
          return h;
        },
      })),
    fails: ['fused/weightNorm.tiny-magnitudes'],
    passes: 'fused/weightNorm.large-magnitudes',
  },
];

describe('the conformance suite catches broken kernels', () => {
  for (const m of MUTATIONS) {
    it(`${m.bug}: ${m.fails.join(', ')} fail; ${m.passes} passes`, async () => {
      for (const id of m.fails) await expect(run(id, m.backend()), id).rejects.toThrow();
      await expect(run(m.passes, m.backend())).resolves.toEqual({});
    });
  }

  it('reports a missing fused kernel as a skip with its reason', async () => {
    const plain = mutant(() => ({ weightNorm: undefined, doraCompose: undefined }));
    await expect(run('fused/weightNorm.linear', plain)).resolves.toEqual({ skipped: expect.stringMatching(/no fused weightNorm/) });
    await expect(run('vs-reference/doraCompose', plain)).resolves.toEqual({ skipped: expect.stringMatching(/no fused doraCompose/) });
  });
});
