/**
 * Device check (not a vitest file): the PEFT fixture parity on the WebGPU backend (≤ 1e-4, the project's GPU
 * tolerance), DoRA caching on the GPU, and ephemeral offload from the CPU backend to the real WebGPU backend.
 * Bundled by `bash test/gpu/run.sh prepare`, run on the GPU machine by `run.sh run`; prints one JSON report.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { relativeError } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { createWebGpuBackend } from '@dorajs/backend-webgpu';
import '@dorajs/backend-webgpu/register';
import {
  type Backend,
  backward,
  fromHostTensor,
  type HostTensor,
  type Layer,
  type Module,
  noGrad,
  parseSafetensors,
  Random,
  tensor,
} from '@dorajs/core';
import { DoraCaching, getPeftModel, LoraConfig, PeftModel } from '../../src/index.js';
import { ConvNet, EmbHead, MLP } from '../helpers/models.js';
import { perturb } from '../helpers/behaviour.js';

const FIX = join(process.cwd(), 'fixtures', 'peft');
const read = (...p: string[]) => parseSafetensors(new Uint8Array(readFileSync(join(FIX, ...p))), p.join('/')).tensors;
const TOL = 1e-4;
const report: Record<string, number | string> = {};
let failures = 0;

function record(key: string, err: number, tol = TOL): void {
  report[key] = err;
  if (!(err <= tol)) {
    failures++;
    report[`FAIL ${key}`] = `${err} > ${tol}`;
  }
}

function load(model: Module, host: ReadonlyMap<string, HostTensor>, be: Backend): void {
  const values = new Map([...host].map(([k, v]) => [k, fromHostTensor(v, be, { file: 'base', key: k })]));
  model.loadStateDict(values);
}

async function parity(name: string, build: (b: Backend) => Layer, be: Backend): Promise<void> {
  const fx = read(name, 'tensors.safetensors');
  const f = (k: string) => fx.get(k)!.data as Float32Array;
  const model = build(be);
  load(model, read(name, 'base', 'model.safetensors'), be);
  const peft = await PeftModel.fromPretrained(model, join(FIX, name, 'adapter'), { isTrainable: true });
  const input = () => fromHostTensor(fx.get(fx.has('input.x') ? 'input.x' : 'input.ids')!, be);
  peft.eval();
  const x = input();
  record(`${name} out.dora`, relativeError(await peft.forward(x).float32(), f('out.dora')));
  record(`${name} out.disabled`, relativeError(await peft.disableAdapter(() => peft.forward(x)).float32(), f('out.disabled')));
  const cached = DoraCaching.scope(() => [noGrad(() => peft.forward(x)), noGrad(() => peft.forward(x))]);
  for (const c of cached) record(`${name} out.dora_cached`, relativeError(await c.float32(), f('out.dora_cached')));
  peft.train();
  const xt = input();
  if (xt.dtype === 'float32') xt.requiresGrad = true;
  const out = peft.forward(xt);
  record(`${name} out.train`, relativeError(await out.float32(), f('out.train')));
  backward(out, { gradient: tensor(f('grad.R'), [...out.shape], { backend: be }) });
  for (const [k, p] of peft.namedParameters())
    if (p.requiresGrad)
      record(`${name} grad.${k.replace('base_model.model.', '')}`, relativeError(await p.grad!.float32(), f(`grad.${k}`)));
  if (fx.has('grad.input.x')) record(`${name} grad.input.x`, relativeError(await xt.grad!.float32(), f('grad.input.x')));
  if (name !== 'mlp_adamw') {
    peft.eval();
    const merged = (await peft.mergeAndUnload()) as Layer;
    record(`${name} out.merged`, relativeError(await merged.forward(x).float32(), f('out.merged')));
  }
}

/** CPU model, norms and merges on the GPU (a WebGPU instance, or `true` → resolveBackend('webgpu')). */
async function offload(label: string, spec: true | Backend): Promise<void> {
  const cpu = createCpuBackend() as unknown as Backend;
  const build = () => new MLP(cpu, [256, 512, 64]);
  const a = build();
  const b = build();
  b.loadStateDict(a.stateDict());
  const config = new LoraConfig({ r: 8, targetModules: ['lin1', 'lin2'], useDora: true, initLoraWeights: false });
  const plain = await getPeftModel(a, config, 'default', { random: new Random(1) });
  const off = await getPeftModel(b, config.with({ runtimeConfig: { ephemeralGpuOffload: spec } }), 'default', { random: new Random(1) });
  const mags = (p: PeftModel) =>
    p
      .namedParameters()
      .filter(([k]) => k.includes('magnitude'))
      .map(([, v]) => v);
  for (const [i, m] of mags(off).entries())
    record(`${label} init magnitude ${i}`, relativeError(await m.float32(), await mags(plain)[i]!.float32()));
  perturb(plain, 2);
  perturb(off, 2);
  plain.eval();
  off.eval();
  const x = tensor(new Random(3).fillNormal(4 * 256), [4, 256], { backend: cpu });
  await plain.mergeAdapter();
  await off.mergeAdapter();
  record(`${label} merged output`, relativeError(await off.forward(x).float32(), await plain.forward(x).float32()));
  await off.unmergeAdapter();
  await plain.unmergeAdapter();
  record(`${label} unmerged output`, relativeError(await off.forward(x).float32(), await plain.forward(x).float32()));
  if (off.parameters().some((p) => p.backend !== cpu)) record(`${label}: model left the CPU`, Infinity);
}

const gpu = (await createWebGpuBackend()) as unknown as Backend;
report['gpu'] = gpu.name;
await parity('linear', (b) => new MLP(b), gpu);
await parity('linear3d', (b) => new MLP(b), gpu);
await parity('lora_plain', (b) => new MLP(b), gpu);
await parity('mlp_adamw', (b) => new MLP(b, [12, 20, 6]), gpu);
await parity('embedding', (b) => new EmbHead(b), gpu);
await parity('conv2d', (b) => new ConvNet(b), gpu);
const live0 = gpu.liveBuffers();
await offload('offload(instance)', gpu);
report['offload: gpu live buffers before/after'] = `${live0}/${gpu.liveBuffers()}`;
if (gpu.liveBuffers() !== live0) record('offload left buffers on the GPU', Infinity);
await offload('offload(true)', true);
report['failures'] = failures;
const text = JSON.stringify(report, null, 1);
console.log(text);
if (process.env['OUT']) writeFileSync(join(process.env['OUT'], 'peft-webgpu.json'), text);
process.exit(failures ? 1 : 0);
