/**
 * Loading a PEFT adapter onto a model. Order matters: read the config, plan the injection, check every
 * key, shape and dtype against the plan from the file header, read the tensors into host memory — and only
 * then move the model (if asked) and install the adapter. Any error before that last step leaves the model
 * exactly as it was.
 */
import {
  type Backend,
  type BackendSpec,
  fromHostTensor,
  type HostTensor,
  type Module,
  ops,
  type Parameter,
  resolveBackend,
  type SourceOptions,
  type Tensor,
} from '@dorajs/core';
import { configFromJsonText } from '../config/config-json.js';
import { preparePatterns } from '../config/patterns.js';
import { AdapterFileError, AdapterKeyError, AdapterShapeError, LoraConfigError } from '../errors.js';
import { internalsOf } from '../internal.js';
import type { AdapterTensors } from '../variants/variant.js';
import type { PeftModel } from '../peft-model.js';
import { applyInjection, planInjection, type TargetPlan } from '../tuner/inject.js';
import { warn } from '../warnings.js';
import { type AdapterReader, type AdapterSource, openAdapter } from './adapter-source.js';
import { adapterFileKeys, MODEL_PREFIX } from './adapter-keys.js';

export interface LoadOptions {
  readonly isTrainable: boolean;
  /** How URLs and Hub ids are reached (revision, endpoint, accessToken, fetch). */
  readonly sourceOptions?: SourceOptions;
  readonly ephemeralGpuOffload?: boolean | Backend;
  readonly backend?: BackendSpec;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Planned reads: file key → the parameter it fills (or the adapter slot it becomes). */
interface Reads {
  readonly adapter: { target: TargetPlan; a: string; b: string; m: string | null }[];
  /** Base-model parameters the file overrides (targeted embeddings' base weights, biases, modules_to_save). */
  readonly params: { key: string; param: Parameter | ((model: Module) => Parameter) }[];
}

export async function loadAdapterInto(peft: PeftModel, source: AdapterSource, name: string, options: LoadOptions): Promise<void> {
  const internals = internalsOf(peft);
  internals.assertNewName(name);
  const reader = await openAdapter(source, options.sourceOptions);
  try {
    let config = configFromJsonText(await reader.configText(), reader.configFile);
    const unsupported = config.unsupportedFeatures();
    if (unsupported.length) throw new AdapterFileError(`dorajs does not implement ${unsupported.join(', ')}`, reader.configFile);
    config = config.with({
      inferenceMode: !options.isTrainable,
      runtimeConfig: options.ephemeralGpuOffload !== undefined ? { ephemeralGpuOffload: options.ephemeralGpuOffload } : {},
    });
    await preparePatterns(config).catch((e: unknown) => {
      throw e instanceof LoraConfigError ? new AdapterFileError(e.message, reader.configFile, { cause: e }) : e;
    });
    const model = peft.getBaseModel();
    const plan = planInjection(model, config, name, 'load');
    const reads = planReads(
      reader,
      plan.targets,
      model,
      plan.modulesToSave.map((m) => m.path),
      name,
    );
    const host = await readAll(reader, reads);
    let backend: Backend | null = null;
    if (options.backend !== undefined) {
      backend = (await resolveBackend(options.backend)).backend;
      await model.to(backend);
    }
    const tensors: AdapterTensors[] = reads.adapter.map(({ target, a, b, m }) => {
      const be = target.layer.baseWeight.backend;
      const up = (key: string) => fromHostTensor(host.get(key)!, be, { file: reader.weightsFile, key });
      const mt = m ? up(m) : null;
      if (!mt) return { a: up(a), b: up(b) };
      // PEFT ≤ 0.11 files and the `.weight` form may store the magnitude flat; install it in PEFT's shape.
      return { a: up(a), b: up(b), m: sameShape(mt.shape, target.shapes.m) ? mt : reshapeOwned(mt, target.shapes.m) };
    });
    applyInjection(model, plan, tensors, internals.random);
    for (const { key, param } of reads.params) {
      const p = typeof param === 'function' ? param(model) : param;
      const t = fromHostTensor(host.get(key)!, p.backend, { file: reader.weightsFile, key });
      p.assign(t);
      t.dispose();
    }
    internals.registerAdapter(name, plan.config);
  } finally {
    await reader.close();
  }
}

function planReads(
  reader: AdapterReader,
  targets: readonly TargetPlan[],
  model: Module,
  savePaths: readonly string[],
  adapterName: string,
): Reads {
  const file = reader.weightsFile;
  const used = new Set<string>();
  const check = (key: string, module: string, expected: readonly number[], required: boolean): boolean => {
    const d = reader.describe(key);
    if (!d) {
      if (required) throw new AdapterKeyError(file, key, module);
      return false;
    }
    if (!FLOAT_DTYPES.has(d.dtype))
      throw new AdapterFileError(
        `tensor '${key}' for module '${module}' has dtype ${d.dtype}; adapter weights must be F32, F16 or BF16`,
        file,
      );
    if (!sameShape(d.shape, expected)) throw new AdapterShapeError(file, key, module, expected, d.shape);
    used.add(key);
    return true;
  };
  const adapter: Reads['adapter'] = [];
  const params: Reads['params'] = [];
  for (const target of targets) {
    const keys = adapterFileKeys(target.kind, target.path);
    check(keys.a, target.path, target.shapes.a, true);
    check(keys.b, target.path, target.shapes.b, true);
    let m: string | null = null;
    // The variants' own tensors (DoRA's magnitude, in PEFT's shape or flat).
    if (target.settings.variant.stateTensors.some((v) => v.name === 'm')) {
      const present = [keys.m, keys.mLegacy].find((k) => reader.describe(k));
      if (!present) throw new AdapterKeyError(file, keys.m, target.path);
      const shape = reader.describe(present)!.shape;
      const flatOk =
        shape.reduce((x, y) => x * y, 1) === target.shapes.m.reduce((x, y) => x * y, 1) &&
        (shape.length === 1 || sameShape(shape, target.shapes.m));
      if (!flatOk) throw new AdapterShapeError(file, present, target.path, target.shapes.m, shape);
      check(present, target.path, shape, true);
      m = present;
    }
    adapter.push({ target, a: keys.a, b: keys.b, m });
    const base = target.layer;
    // A quantized base has no float weight an adapter file could replace (PEFT saves none for bnb layers).
    if (!base.quantizedBase && check(keys.baseWeight, target.path, base.weight.shape, false))
      params.push({ key: keys.baseWeight, param: base.weight });
    const bias = base.bias;
    if (bias && check(keys.baseBias, target.path, bias.shape, false)) params.push({ key: keys.baseBias, param: bias });
  }
  // Plain base parameters (bias='all') and modules_to_save copies: `base_model.model.<path>.<param>`.
  const state = model.stateDict();
  for (const key of reader.keys) {
    if (used.has(key) || !key.startsWith(MODEL_PREFIX)) continue;
    const inner = key.slice(MODEL_PREFIX.length);
    const savePath = savePaths.find((p) => inner.startsWith(`${p}.`));
    if (savePath) {
      const rest = inner.slice(savePath.length + 1);
      const original = state.get(`${savePath}.${rest}`) ?? state.get(`${savePath}.original_module.${rest}`);
      if (!original) continue;
      check(key, savePath, original.shape, true);
      // The copy only exists once applyInjection has run; look it up then.
      const copyKey = `${savePath}.modules_to_save.${adapterName}.${rest}`;
      params.push({ key, param: (m: Module) => m.stateDict().get(copyKey)! });
      continue;
    }
    const p = state.get(inner);
    if (p && inner.endsWith('bias')) {
      check(key, inner.slice(0, -'.bias'.length), p.shape, true);
      params.push({ key, param: p });
    }
  }
  const unexpected = reader.keys.filter((k) => !used.has(k));
  if (unexpected.length) {
    warn(
      'unexpected-adapter-keys',
      `${file}: ${unexpected.length} tensor(s) not used by the model: ${unexpected.slice(0, 10).join(', ')}${unexpected.length > 10 ? ', …' : ''}`,
    );
  }
  return { adapter, params };
}

async function readAll(reader: AdapterReader, reads: Reads): Promise<Map<string, HostTensor>> {
  const keys = [...reads.adapter.flatMap((r) => [r.a, r.b, ...(r.m ? [r.m] : [])]), ...reads.params.map((p) => p.key)];
  const host = new Map<string, HostTensor>();
  for (const key of keys) host.set(key, await reader.read(key));
  return host;
}

/** A view of `t` in `shape` (same element count), releasing `t`. */
function reshapeOwned(t: Tensor, shape: readonly number[]): Tensor {
  const v = ops.reshape(t, [...shape]);
  t.dispose();
  return v;
}
