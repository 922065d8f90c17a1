/**
 * QLoRA / QDoRA on core's QuantizedLinear (bitsandbytes nf4, fp4, int8): every output, gradient and merge
 * equals LoRA/DoRA on a dense twin that holds the dequantized weights (PEFT's QDoRA semantics: the norm
 * comes from the dequantized W), and the adapter must matter for the comparison to mean anything.
 */
import { relativeError } from '@dorajs/backend-conformance';
import {
  type Backend,
  backward,
  bf16ToF32,
  dequantizeHost,
  Layer,
  Linear,
  ops,
  QuantizedLinear,
  type QuantizeOptions,
  quantizeHost,
  quantizeLinears,
  Random,
  SiLU,
  type Tensor,
  tensor,
  tidy,
} from '@dorajs/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  adapterFileTensors,
  collectWarningsAsync,
  DoraCaching,
  getPeftModel,
  LoraConfig,
  MergeError,
  type PeftModel,
} from '../src/index.js';
import { cpu } from './helpers/backend.js';
import { disposeAll, parityBackends } from './helpers/backends.js';
import { TOL } from './helpers/parity.js';

class Net extends Layer {
  q_proj: Layer;
  act = new SiLU();
  o_proj: Layer;
  lm_head: Layer;

  constructor(backend: Backend, seed: number) {
    super();
    const random = new Random(seed);
    this.q_proj = new Linear(64, 100, { backend, random });
    this.o_proj = new Linear(100, 48, { backend, random, bias: false });
    this.lm_head = new Linear(48, 10, { backend, random });
  }

  forward(x: Tensor): Tensor {
    return this.lm_head.forward(this.o_proj.forward(this.act.forward(this.q_proj.forward(x))));
  }
}

const FORMATS: QuantizeOptions[] = [
  { format: 'nf4' },
  { format: 'nf4', doubleQuant: true },
  { format: 'fp4', blocksize: 128 },
  { format: 'int8' },
];
const label = (o: QuantizeOptions) => `${o.format}${o.doubleQuant ? '+dq' : ''}${o.blocksize ? `/${o.blocksize}` : ''}`;

/** A quantized model and its dense twin holding exactly the dequantized weights. */
async function twins(options: QuantizeOptions, backend: Backend) {
  const quant = new Net(backend, 7);
  const replaced = await quantizeLinears(quant, options);
  expect(replaced).toEqual(['q_proj', 'o_proj']);
  const dense = new Net(backend, 7);
  for (const path of replaced) {
    const q = quant.getSubmodule(path) as QuantizedLinear;
    const w = tensor(dequantizeHost(await q.weight.toHost()), [...q.weight.shape], { backend });
    (dense.getSubmodule(path) as Linear).weight.assign(w);
    w.dispose();
  }
  return { quant, dense };
}

/** Same adapters on both: random A, B (and m perturbed) copied from the dense twin. */
async function adapt(useDora: boolean, quant: Net, dense: Net) {
  const config = () => new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ['q_proj', 'o_proj'], useDora });
  const pd = await getPeftModel(dense, config());
  const pq = await getPeftModel(quant, config());
  const random = new Random(3);
  const qState = pq.stateDict();
  for (const [name, p] of pd.namedParameters()) {
    if (!p.requiresGrad) continue;
    const host = (await p.float32()).map((v) => (name.includes('magnitude') ? v * (1 + 0.3 * (random.next() - 0.5)) : random.next() - 0.5));
    const t = tensor(host, [...p.shape], { backend: p.backend });
    p.assign(t);
    qState.get(name)!.assign(t);
    t.dispose();
  }
  return { pd, pq };
}

async function closeTo(a: Tensor, b: Tensor, what: string, tol = TOL): Promise<void> {
  const err = relativeError(await a.float32(), await b.float32());
  if (process.env['DORA_PEFT_VERBOSE']) console.log(`${a.backend.name} ${what}: ${err.toExponential(2)}`);
  expect(err, `${what}: relative error ${err}`).toBeLessThanOrEqual(tol);
}

// Every parity backend: cpu (1e-5), webgpu (Dawn, llvmpipe without a GPU; 1e-4; skipped locally without an
// adapter, a failure in CI) and tfjs-cpu (1e-5; no 8-bit storage: packed bytes live one per int32 and
// core's composites dequantize them).
const backends = await parityBackends();
afterAll(() => disposeAll(backends));

describe.each(backends)('on $name', ({ name, backend: be, skipReason, tol }) => {
  describe.skipIf(!be).each(FORMATS)(`quantized base $format${skipReason ? ` (${skipReason})` : ''}`, (options) => {
    for (const useDora of [true, false]) {
      it(`${useDora ? 'QDoRA' : 'QLoRA'} ${label(options)}: forward, every gradient and the cached eval forward equal the dense twin (≤ ${tol} on ${name})`, async () => {
        const backend = be!;
        const close = (a: Tensor, b: Tensor, what: string) => closeTo(a, b, what, tol);
        const { quant, dense } = await twins(options, backend);
        // tfjs stores no 8-bit dtypes: the packed bytes (int8 values) live one per int32, same values.
        const packed = (quant.q_proj as QuantizedLinear).weight.data.dtype;
        expect(packed).toBe(backend.capabilities.dtypes.includes('uint8') ? (options.format === 'int8' ? 'int8' : 'uint8') : 'int32');
        const { pd, pq } = await adapt(useDora, quant, dense);
        if (useDora) {
          // The magnitude PEFT initialises is ‖W‖ of the dequantized weight: compare before perturbing… after adapt it
          // holds the copied values, so check the init path on a fresh adapter instead.
          await pq.addAdapter('fresh', new LoraConfig({ r: 4, targetModules: ['q_proj'], useDora: true }));
          await pd.addAdapter('fresh', new LoraConfig({ r: 4, targetModules: ['q_proj'], useDora: true }));
          const key = 'base_model.model.q_proj.lora_magnitude_vector.fresh.weight';
          await close(pq.stateDict().get(key)!, pd.stateDict().get(key)!, 'initial magnitude');
          pq.deleteAdapter('fresh');
          pd.deleteAdapter('fresh');
        }
        const random = new Random(11);
        const x = tensor(random.fillNormal(5 * 64, 0, 1), [5, 64], { backend });
        const R = tensor(random.fillNormal(5 * 10, 0, 1), [5, 10], { backend });
        pq.train();
        pd.train();
        const grads = new Map<string, Tensor>();
        for (const [which, peft] of [
          ['dense', pd],
          ['quant', pq],
        ] as const) {
          const xi = tensor(await x.float32(), [5, 64], { backend });
          xi.requiresGrad = true;
          const out = peft.forward(xi);
          backward(out, { gradient: R });
          grads.set(`${which}.out`, out);
          grads.set(`${which}.x`, xi.grad!);
          for (const [name, p] of peft.namedParameters()) if (p.requiresGrad) grads.set(`${which}.${name}`, p.grad!);
        }
        await close(grads.get('quant.out')!, grads.get('dense.out')!, 'train output');
        await close(grads.get('quant.x')!, grads.get('dense.x')!, 'input gradient');
        const trainable = pd.namedParameters().filter(([, p]) => p.requiresGrad);
        expect(trainable.length).toBe(useDora ? 6 : 4);
        for (const [name] of trainable) {
          expect(grads.get(`quant.${name}`), `gradient of ${name}`).toBeDefined();
          await close(grads.get(`quant.${name}`)!, grads.get(`dense.${name}`)!, `gradient of ${name}`);
        }
        // The adapter matters: without it the output is far from the adapted one.
        pq.eval();
        pd.eval();
        const base = await pq.disableAdapter(() => pq.forward(x).float32());
        const adapted = await pq.forward(x).float32();
        expect(relativeError(adapted, base)).toBeGreaterThan(1e-2);
        await close(pq.forward(x), pd.forward(x), 'eval output');
        const cached = DoraCaching.scope(() => [pq.forward(x), pq.forward(x)]);
        for (const c of cached) await close(c, pd.forward(x), 'cached eval output');
        // The quantization matters too: the base before quantizing is far from the dequantized one.
        const original = new Net(backend, 7);
        expect(relativeError(await original.forward(x).float32(), base)).toBeGreaterThan(1e-3);
      });
    }

    it(`QDoRA ${label(options)}, one token (decode): a backend's one-pass GEMV + norm over packed W gives the dense twin's output and input gradient`, async () => {
      const backend = be!;
      const close = (a: Tensor, b: Tensor, what: string) => closeTo(a, b, what, tol);
      const { quant, dense } = await twins(options, backend);
      const { pd, pq } = await adapt(true, quant, dense);
      const fused = () => (backend as unknown as { stats?: () => { fused: number } }).stats?.().fused ?? 0;
      const x = tensor(new Random(13).fillNormal(64, 0, 1), [1, 64], { backend });
      pq.eval();
      pd.eval();
      const before = fused();
      const y = pq.forward(x);
      // WebGPU serves the GEMV and ‖W + s·B·A‖ of both quantized layers from one read of the packed W each.
      if (name === 'webgpu') expect(fused() - before).toBe(2);
      await close(y, pd.forward(x), 'one-token eval output');
      pq.train();
      pd.train();
      const R = tensor(new Random(14).fillNormal(10, 0, 1), [1, 10], { backend });
      const dx: Tensor[] = [];
      for (const peft of [pd, pq]) {
        const xi = tensor(await x.float32(), [1, 64], { backend });
        xi.requiresGrad = true;
        backward(peft.forward(xi), { gradient: R });
        dx.push(xi.grad!);
      }
      await close(dx[1]!, dx[0]!, 'one-token input gradient');
    });
  });

  // tfjs stores no 16-bit dtypes (bf16 checkpoints load as float32 there): nothing to run.
  it.skipIf(!be?.capabilities.dtypes.includes('bfloat16'))(
    `bfloat16 base (keepWidth), one token: the DoRA forward and input gradient equal the float32 twin${skipReason ? ` (${skipReason})` : ''}`,
    async () => {
      const backend = be!;
      const { narrow, dense } = bf16Twins(backend);
      const { pd, pq } = await adapt(true, narrow, dense);
      const x = tensor(new Random(15).fillNormal(64, 0, 1), [1, 64], { backend });
      pq.eval();
      pd.eval();
      await closeTo(pq.forward(x), pd.forward(x), 'bf16 one-token eval output', tol);
      pq.train();
      pd.train();
      const R = tensor(new Random(16).fillNormal(10, 0, 1), [1, 10], { backend });
      const dx: Tensor[] = [];
      for (const peft of [pd, pq]) {
        const xi = tensor(await x.float32(), [1, 64], { backend });
        xi.requiresGrad = true;
        backward(peft.forward(xi), { gradient: R });
        dx.push(xi.grad!);
      }
      await closeTo(dx[1]!, dx[0]!, 'bf16 one-token input gradient', tol);
    },
  );
});

describe('Module.to on a quantized model', () => {
  // cpu → tfjs-cpu (bytes one per int32) → webgpu where present → cpu: the packed weights travel with the
  // parameters, the outputs stay the dense twin's, and every backend left behind holds nothing of the model.
  const route = backends.filter((b) => b.backend).map((b) => b);
  it.each(FORMATS)(`QDoRA $format moves with its packed weights (${route.map((b) => b.name).join(' → ')} → cpu)`, async (options) => {
    const home = backends[0]!.backend!;
    const { quant, dense } = await twins(options, home);
    const { pd, pq } = await adapt(true, quant, dense);
    pq.eval();
    pd.eval();
    const xs = new Random(17).fillNormal(3 * 64, 0, 1);
    const want = await tidy(() => pd.forward(tensor(xs, [3, 64], { backend: home }))).float32();
    const qbase = (path: string) => pq.loraLayers().find((l) => l.path === path)!.quantizedBase!;
    const packedBefore = await qbase('q_proj').weight.toHost();
    let from = home;
    for (const hop of [...route.slice(1), route[0]!]) {
      const to = hop.backend!;
      const liveBefore = from.liveBuffers();
      const held = qbase('q_proj').weight;
      expect(held.backend).toBe(from);
      await pq.to(to);
      expect(held.isDisposed, `${hop.name}: the packed weight left behind is released`).toBe(true);
      for (const path of ['q_proj', 'o_proj']) {
        const q = qbase(path);
        expect(q.weight.backend, `${path} packed weight on ${hop.name}`).toBe(to);
        expect(q.weight.data.backend).toBe(to);
      }
      expect(pq.parameters().every((p) => p.backend === to)).toBe(true);
      // Everything the model held on `from` is gone (buffers the test made there stay).
      expect(from.liveBuffers()).toBeLessThan(liveBefore);
      const x = tensor(xs, [3, 64], { backend: to });
      const err = relativeError(await tidy(() => pq.forward(x)).float32(), want);
      expect(err, `QDoRA output on ${hop.name}: relative error ${err}`).toBeLessThanOrEqual(hop.tol);
      x.dispose();
      from = to;
    }
    // Back home: the packed bytes are the ones quantized there, bit for bit.
    const packedAfter = await qbase('q_proj').weight.toHost();
    expect(packedAfter).toEqual(packedBefore);
  });

  it('a disposed packed weight refuses to move, naming it', async () => {
    const home = backends[0]!.backend!;
    const other = backends[2]!.backend!;
    const { quant } = await twins({ format: 'nf4' }, home);
    const w = (quant.q_proj as QuantizedLinear).weight;
    w.dispose();
    await expect(w.to(other)).rejects.toThrow('q_proj.weight: moved after dispose()');
  });
});

describe.each(FORMATS)('quantized base $format', (options) => {
  const close = closeTo;

  it(`merge into ${label(options)} requantizes the float32 merge (one rounding warning); unmerge requantizes back`, async () => {
    const backend = cpu();
    const { quant, dense } = await twins(options, backend);
    const { pd, pq } = await adapt(true, quant, dense);
    const random = new Random(5);
    const x = tensor(random.fillNormal(3 * 64, 0, 1), [3, 64], { backend });
    pq.eval();
    pd.eval();
    const before = await pq.forward(x).float32();
    const { warnings } = await collectWarningsAsync(() => pq.mergeAdapter());
    const bits = options.format === 'int8' ? '8-bit' : '4-bit';
    expect(warnings.map((w) => w.message)).toEqual([
      `Merge lora module to ${bits} linear may get different generations due to rounding errors.`,
    ]);
    await pd.mergeAdapter();
    // Merged packed bytes = bitsandbytes' quantization of the dense twin's float32 merge.
    for (const path of ['q_proj', 'o_proj']) {
      const layer = pq.loraLayers().find((l) => l.path === path)!;
      const q = layer.quantizedBase!;
      const got = await q.weight.toHost();
      const w = (pd.loraLayers().find((l) => l.path === path)!.weight as Tensor).float32();
      const want = quantizeHost(await w, q.weight.shape, q.quantizeOptions);
      expect(got.data, `${path} packed bytes`).toEqual(want.data);
      expect('absmax' in got ? got.absmax : got.scb).toEqual('absmax' in want ? want.absmax : want.scb);
    }
    // Merged ≈ unmerged up to the requantization (not exact: that is what the warning says).
    const merged = await pq.forward(x).float32();
    expect(relativeError(merged, before)).toBeLessThan(0.5);
    expect(() => pq.disableAdapter(() => pq.forward(x))).toThrow(MergeError);
    const { warnings: w2 } = await collectWarningsAsync(() => pq.unmergeAdapter());
    expect(w2.map((w) => w.code)).toEqual(['quantized-merge-rounding']);
    expect(pq.loraLayers().every((l) => !l.merged && l.quantizedBase !== null)).toBe(true);
  });

  it(`mergeAndUnload({ dtype: 'float32' }) on ${label(options)} is the dense twin's float32 merge`, async () => {
    const backend = cpu();
    const { quant, dense } = await twins(options, backend);
    const { pd, pq } = await adapt(true, quant, dense);
    const x = tensor(new Random(5).fillNormal(3 * 64, 0, 1), [3, 64], { backend });
    pq.eval();
    pd.eval();
    const expected = await pd.forward(x).float32();
    const f32 = (await pq.mergeAndUnload({ dtype: 'float32' })) as Net;
    expect(f32.namedModules().some(([, m]) => m instanceof QuantizedLinear)).toBe(false);
    const fromDense = (await pd.mergeAndUnload()) as Net;
    for (const path of ['q_proj', 'o_proj']) {
      await close((f32.getSubmodule(path) as Linear).weight, (fromDense.getSubmodule(path) as Linear).weight, `${path} merged weight`);
    }
    expect(relativeError(await f32.forward(x).float32(), expected)).toBeLessThanOrEqual(TOL);
  });
});

describe('quantized bases: conversion, bf16 unload, saving', () => {
  it('quantizeLinears skips lm_head and tied outputs, is all-or-nothing, refuses NaN naming the weight', async () => {
    const backend = cpu();
    const net = new Net(backend, 1);
    const w = (net.o_proj as Linear).weight;
    const values = await w.float32();
    values[17] = Number.NaN;
    const t = tensor(values, [...w.shape], { backend });
    w.assign(t);
    t.dispose();
    await expect(quantizeLinears(net, { format: 'nf4' })).rejects.toThrow(/o_proj\.weight: element 17 is NaN/);
    expect(net.q_proj).toBeInstanceOf(Linear);
    await expect(quantizeLinears(net, { format: 'nf5' as 'nf4' })).rejects.toThrow(/quant type 'nf5' is not supported/);
    const ok = new Net(backend, 1);
    expect(await quantizeLinears(ok, { format: 'int8', skipModules: ['o_proj'] })).toEqual(['q_proj']);
    expect(ok.lm_head).toBeInstanceOf(Linear);
    expect(ok.o_proj).toBeInstanceOf(Linear);
  });

  it('mergeAndUnload({ dtype: "bfloat16" }) rounds the float32 merge once; adapters save as ordinary PEFT adapters', async () => {
    const backend = cpu();
    const { quant, dense } = await twins({ format: 'nf4' }, backend);
    const { pd, pq } = await adapt(true, quant, dense);
    const keys = async (p: PeftModel) => [...(await adapterFileTensors(p, 'default')).keys()].sort();
    expect(await keys(pq)).toEqual(await keys(pd));
    const qFile = await adapterFileTensors(pq, 'default');
    const dFile = await adapterFileTensors(pd, 'default');
    for (const [k, v] of dFile) expect(qFile.get(k)!.data, k).toEqual(v.data);
    const bf = (await pq.mergeAndUnload({ dtype: 'bfloat16' })) as Net;
    const f32 = (await pd.mergeAndUnload()) as Net;
    for (const path of ['q_proj', 'o_proj']) {
      const w = (bf.getSubmodule(path) as Linear).weight;
      expect(w.dtype).toBe('bfloat16');
      const want = await (f32.getSubmodule(path) as Linear).weight.float32();
      const got = Float32Array.from((await w.data()) as Uint16Array, bf16ToF32);
      // bf16 keeps 8 significant bits: at most half an ulp (2^-8 relative) from the float32 merge.
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(Math.abs(want[i]!) * 2 ** -8);
    }
    await expect(pq.mergeAndUnload({ dtype: 'float16' as 'bfloat16' })).rejects.toThrow(MergeError);
  });

  it('tidy releases every temporary of a QDoRA forward', async () => {
    const backend = cpu();
    const { quant, dense } = await twins({ format: 'nf4', doubleQuant: true }, backend);
    const { pq } = await adapt(true, quant, dense);
    const x = tensor(new Float32Array(64).fill(0.5), [1, 64], { backend });
    pq.eval();
    const live = backend.liveBuffers();
    tidy(() => pq.forward(x)).dispose();
    expect(backend.liveBuffers()).toBe(live);
  });
});

describe('bfloat16 bases (loadModel keepWidth)', () => {
  it('merge computes in float32 and rounds once to bf16; unmerge in a disabled forward keeps bf16', async () => {
    const backend = cpu();
    const { narrow, dense } = bf16Twins(backend);
    const { pd, pq } = await adapt(true, narrow, dense);
    await pq.mergeAdapter();
    await pd.mergeAdapter();
    for (const path of ['q_proj', 'o_proj']) {
      const w = pq.loraLayers().find((l) => l.path === path)!.weight;
      expect(w.dtype).toBe('bfloat16');
      const got = Float32Array.from((await w.data()) as Uint16Array, bf16ToF32);
      const want = await pd
        .loraLayers()
        .find((l) => l.path === path)!
        .weight.float32();
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(Math.abs(want[i]!) * 2 ** -8);
    }
    const x = tensor(new Random(2).fillNormal(2 * 64, 0, 1), [2, 64], { backend });
    pq.eval();
    pq.disableAdapter(() => pq.forward(x)).dispose();
    expect(pq.loraLayers().every((l) => !l.merged && l.weight.dtype === 'bfloat16')).toBe(true);
  });
});

/** Two equal nets: `narrow` with q_proj/o_proj weights kept bfloat16 (as loadModel keepWidth holds them), `dense` with those values widened to float32. */
function bf16Twins(backend: Backend): { narrow: Net; dense: Net } {
  const narrow = new Net(backend, 4);
  const dense = new Net(backend, 4);
  for (const path of ['q_proj', 'o_proj']) {
    const w = (narrow.getSubmodule(path) as Linear).weight;
    const bf = ops.cast(w, 'bfloat16');
    w.assign(bf, { changeDtype: true });
    w.requiresGrad = false;
    const back = ops.cast(bf, 'float32');
    (dense.getSubmodule(path) as Linear).weight.assign(back);
    bf.dispose();
    back.dispose();
  }
  return { narrow, dense };
}
