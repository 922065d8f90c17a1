/**
 * One PEFT fixture case through the public API from files on disk: base weights, fromPretrained, then every
 * recorded output, gradient and the merged weights.
 */
import { type Backend, backward, type Layer, type Tensor, tensor, tidy } from '@dorajs/core';
import { expect } from 'vitest';
import { DoraCaching, PeftModel } from '../../src/index.js';
import { type Fixture, fixturePath, loadBase, readFixture, readHost } from './fixtures.js';
import { HOST_TOLERANCE, relativeError } from '@dorajs/backend-conformance';

/** The CPU bound; backends off the host (GPUs) are held to OFF_HOST_TOLERANCE's 1e-4 (see ./backends.ts). */
export const TOL = HOST_TOLERANCE.rtol;

export interface ParityCase {
  readonly name: string;
  readonly build: (backend: Backend) => Layer;
}

export async function expectClose(t: Tensor, expected: Float32Array, what: string, tol = TOL): Promise<void> {
  const err = relativeError(await t.float32(), expected);
  if (process.env['DORA_PEFT_VERBOSE']) console.log(`${what}: ${err.toExponential(2)}`);
  expect(err, `${what}: relative error ${err}`).toBeLessThanOrEqual(tol);
}

export async function loadCase(c: ParityCase, backend: Backend, adapterDir = 'adapter'): Promise<{ peft: PeftModel; fx: Fixture }> {
  const model = c.build(backend);
  await loadBase(model, c.name, backend);
  const peft = await PeftModel.fromPretrained(model, fixturePath(c.name, adapterDir), { isTrainable: true });
  return { peft, fx: await readFixture(c.name) };
}

/** Eval-mode outputs: out.dora, out.disabled, out.dora_cached, and every param.* value. */
export async function checkOutputs(peft: PeftModel, fx: Fixture, backend: Backend, tol = TOL): Promise<void> {
  peft.eval();
  const x = fx.input(backend);
  const state = peft.stateDict();
  for (const key of fx.tensors.keys()) {
    if (!key.startsWith('param.')) continue;
    const p = state.get(key.slice('param.'.length));
    expect(p, `parameter ${key}`).toBeDefined();
    await expectClose(p!, fx.float(key), key, tol);
  }
  const out = tidy(() => peft.forward(x));
  await expectClose(out, fx.float('out.dora'), 'out.dora', tol);
  // The adapter must matter, or the comparisons above prove nothing.
  expect(relativeError(fx.float('out.dora'), fx.float('out.base'))).toBeGreaterThan(1e-3);
  const disabled = peft.disableAdapter(() => peft.forward(x));
  await expectClose(disabled, fx.float('out.disabled'), 'out.disabled', tol);
  const cached = DoraCaching.scope(() => [peft.forward(x), peft.forward(x)]);
  for (const c of cached) await expectClose(c, fx.float('out.dora_cached'), 'out.dora_cached', tol);
  for (const t of [x, out, disabled, ...cached]) t.dispose();
}

/** Train-mode output and gradients of sum(out·R) for every trainable parameter and a float input. */
export async function checkGradients(peft: PeftModel, fx: Fixture, backend: Backend, tol = TOL): Promise<void> {
  peft.train();
  const x = fx.input(backend);
  if (x.dtype === 'float32') x.requiresGrad = true;
  const out = peft.forward(x);
  await expectClose(out, fx.float('out.train'), 'out.train', tol);
  const R = tensor(fx.float('grad.R'), [...out.shape], { backend });
  backward(out, { gradient: R });
  let checked = 0;
  for (const [name, p] of peft.namedParameters()) {
    const key = `grad.${name}`;
    if (!p.requiresGrad) continue;
    expect(fx.tensors.has(key), `fixture has ${key}`).toBe(true);
    expect(p.grad, `gradient of ${name}`).not.toBeNull();
    await expectClose(p.grad!, fx.float(key), key, tol);
    checked++;
  }
  expect(checked).toBe([...fx.tensors.keys()].filter((k) => k.startsWith('grad.') && k !== 'grad.R' && k !== 'grad.input.x').length);
  if (fx.tensors.has('grad.input.x')) await expectClose(x.grad!, fx.float('grad.input.x'), 'grad.input.x', tol);
  for (const p of peft.parameters()) {
    p.grad?.dispose();
    p.grad = null;
  }
  for (const t of [x, out, R]) t.dispose();
}

/** mergeAndUnload: the output of the merged plain model and its weights against merged.safetensors. */
export async function checkMerged(peft: PeftModel, fx: Fixture, backend: Backend, name: string, tol = TOL): Promise<Layer> {
  peft.eval();
  const model = (await peft.mergeAndUnload()) as Layer;
  const x = fx.input(backend);
  const out = model.forward(x);
  await expectClose(out, fx.float('out.merged'), 'out.merged', tol);
  const merged = await readHost(fixturePath(name, 'merged.safetensors'));
  const state = model.stateDict();
  expect([...state.keys()].sort()).toEqual([...merged.keys()].sort());
  for (const [k, v] of merged) await expectClose(state.get(k)!, v.data as Float32Array, `merged ${k}`, tol);
  x.dispose();
  out.dispose();
  return model;
}
