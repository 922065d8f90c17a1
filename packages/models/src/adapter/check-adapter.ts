/**
 * Whether a PEFT adapter was made for this model, checked from its config and tensor shapes alone (no tensor
 * data, nothing attached): every adapter tensor must name a module the model has, of the kind and shape it
 * was trained on. PEFT itself attaches what matches and only warns about the rest — so a Phi-3 adapter
 * (`qkv_proj`, `gate_up_proj`) on a Llama would silently adapt `o_proj` and `down_proj` alone. Here that is
 * a typed one-line error naming the adapter file, the tensor and the module. Browser-safe.
 */
import { Conv1D, Embedding, Linear, type Module } from '@dorajs/core';
import { createModel } from '../architectures.js';
import type { JsonObject } from '../config/config-fields.js';
import { AdapterMismatchError } from '../errors.js';
import { unloadedWeights } from '../io/unloaded-weights.js';
import type { CausalLM } from '../shared/causal-lm.js';

/** The parts of an adapter the check reads. */
export interface AdapterDescription {
  /** Parsed adapter_config.json. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Each tensor of adapter_model.safetensors and its shape (from the header). */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /** adapter_model.safetensors (or any name) for errors. */
  readonly file: string;
}

const PREFIX = 'base_model.model.';

/** Adapter tensor suffixes and the module dimension each must match: [axis of the tensor, what]. */
type Expect = (m: Module) => readonly (readonly [number, number, string])[] | null;

function dims(m: Module): { in: number; out: number } | null {
  if (m instanceof Linear) return { out: m.weight.shape[0]!, in: m.weight.shape[1]! };
  // Conv1D stores [in, out]; PEFT's lora_A / lora_B are laid out as for a Linear.
  if (m instanceof Conv1D) return { in: m.weight.shape[0]!, out: m.weight.shape[1]! };
  return null;
}

const SUFFIXES: readonly (readonly [string, Expect])[] = [
  ['lora_A.weight', (m) => (dims(m) ? [[1, dims(m)!.in, 'in_features']] : null)],
  ['lora_B.weight', (m) => (dims(m) ? [[0, dims(m)!.out, 'out_features']] : null)],
  ['lora_magnitude_vector', (m) => (dims(m) ? [[0, dims(m)!.out, 'out_features']] : null)],
  ['lora_magnitude_vector.weight', (m) => (dims(m) ? [[0, dims(m)!.out, 'out_features']] : null)],
  ['lora_A.bias', () => []],
  ['lora_B.bias', (m) => (dims(m) ? [[0, dims(m)!.out, 'out_features']] : null)],
  ['lora_embedding_A', (m) => (m instanceof Embedding ? [[1, m.weight.shape[0]!, 'num_embeddings']] : null)],
  ['lora_embedding_B', (m) => (m instanceof Embedding ? [[0, m.weight.shape[1]!, 'embedding_dim']] : null)],
];

/** Names the model an adapter_config.json says it was made for, if it says. */
function madeFor(config: Readonly<Record<string, unknown>>): string {
  const mapping = config['auto_mapping'];
  const cls = mapping && typeof mapping === 'object' ? (mapping as Record<string, unknown>)['base_model_class'] : undefined;
  const name = config['base_model_name_or_path'];
  if (typeof cls === 'string') return `the adapter was made for a ${cls}`;
  if (typeof name === 'string' && name) return `the adapter was made for ${name}`;
  return 'the adapter was made for another model';
}

/**
 * Throws an AdapterMismatchError (one line: file, tensor, module, shapes) unless every LoRA/DoRA tensor of
 * `adapter` names a module of `model` with the matching kind and size. Tensors PEFT keeps whole
 * (`modules_to_save` copies, trained biases) must name a module of the model too. Reads nothing but the
 * description; changes nothing.
 */
export function checkAdapterFits(model: Module, adapter: AdapterDescription, modelName = model.typeName): void {
  const modules = new Map(model.namedModules());
  const parameters = new Map(model.namedParameters());
  const fail = (key: string, why: string): never => {
    throw new AdapterMismatchError(`${adapter.file}: tensor '${key}' ${why}; ${madeFor(adapter.config)}`, adapter.file, key);
  };
  for (const [key, shape] of adapter.shapes) {
    if (!key.startsWith(PREFIX)) fail(key, `does not start with '${PREFIX}' (not a PEFT adapter tensor)`);
    const name = key.slice(PREFIX.length);
    const suffix = SUFFIXES.find(([s]) => name.endsWith(`.${s}`));
    if (!suffix) {
      // modules_to_save copies (`<path>.modules_to_save.<adapter>.<param>` in memory, `<path>.<param>` on disk)
      // and trained biases: a parameter of the model.
      const plain = name.replace(/\.modules_to_save\.[^.]+\./, '.');
      const param = parameters.get(plain);
      if (!param) fail(key, `names parameter '${plain}', which this ${modelName} does not have`);
      else if (param.shape.join(',') !== shape.join(',')) {
        fail(key, `has shape [${shape.join(', ')}] but parameter '${plain}' of this ${modelName} is [${param.shape.join(', ')}]`);
      }
      continue;
    }
    const path = name.slice(0, -(suffix[0].length + 1));
    const module = modules.get(path);
    if (!module) fail(key, `adapts module '${path}', which this ${modelName} does not have`);
    const checks = suffix[1](module!);
    if (checks === null) fail(key, `adapts module '${path}', a ${module!.constructor.name} in this ${modelName}, which it cannot adapt`);
    for (const [axis, size, what] of checks!) {
      if (shape[axis] !== size) {
        fail(key, `has shape [${shape.join(', ')}] but module '${path}' of this ${modelName} has ${what} ${size}`);
      }
    }
  }
}

/**
 * The module tree of the model config.json describes, with shapes but no weights (what the loader builds
 * before it reads the checkpoint): for checking an adapter before any weight is read. Nothing is allocated
 * on a backend; dispose it when done.
 */
export function modelSkeleton(json: JsonObject, file = 'config.json'): CausalLM {
  return createModel(json, unloadedWeights(), file);
}
