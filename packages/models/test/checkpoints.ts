/** Writes random Hugging Face model folders (single file or shards, F32/BF16/F16) for the tests. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type HostTensor, Random } from '@dorajs/core';
import { saveSafetensors } from '@dorajs/core/node';
import { createModel } from '../src/index.js';
import { cpu } from './helpers.js';

type Json = Readonly<Record<string, unknown>>;

export interface CheckpointOptions {
  readonly seed?: number;
  readonly dtype?: 'F32' | 'BF16' | 'F16';
  /** Split into this many shards with an index (default: one model.safetensors). */
  readonly shards?: number;
  /** Keys to drop from the written file. */
  readonly omit?: readonly string[];
  /** Renames keys on the way out (e.g. strip the `transformer.` prefix). */
  readonly rename?: (key: string) => string;
  /** Extra tensors written as they are. */
  readonly extra?: Readonly<Record<string, HostTensor>>;
}

export const shardName = (i: number, n: number): string =>
  `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/**
 * Writes config.json and weights for `config` into `dir` and returns the values the model will see
 * (after any narrowing), keyed by the model's own parameter names.
 */
export async function writeCheckpoint(dir: string, config: Json, options: CheckpointOptions = {}): Promise<Map<string, Float32Array>> {
  const random = new Random(options.seed ?? 1);
  const backend = cpu();
  const model = createModel(config, { backend });
  // A tied weight is stored once, under its first name (as transformers saves it).
  const names = model.namedParameters();
  const values = new Map<string, Float32Array>();
  const files: Map<string, HostTensor>[] = Array.from({ length: options.shards ?? 1 }, () => new Map());
  names.forEach(([name, p], i) => {
    // Norm weights near 1 and other weights small keep activations in a range where float32 is exact enough.
    const isNorm = /norm|ln_/.test(name) && name.endsWith('.weight');
    const raw = random.fillNormal(p.size, isNorm ? 1 : 0, isNorm ? 0.1 : 0.3);
    const [host, seen] = narrow(raw, p.shape, options.dtype ?? 'F32');
    values.set(name, seen);
    if (options.omit?.includes(name)) return;
    files[i % files.length]!.set(options.rename ? options.rename(name) : name, host);
  });
  for (const [key, t] of Object.entries(options.extra ?? {})) files[0]!.set(key, t);
  model.dispose();
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  if (files.length === 1) {
    await saveSafetensors(join(dir, 'model.safetensors'), files[0]!, { format: 'pt' });
  } else {
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (const [i, tensors] of files.entries()) {
      const file = shardName(i, files.length);
      await saveSafetensors(join(dir, file), tensors, { format: 'pt' });
      for (const [key, t] of tensors) {
        weightMap[key] = file;
        totalSize += t.data.byteLength;
      }
    }
    const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
    await writeFile(join(dir, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`);
  }
  return values;
}

function narrow(values: Float32Array, shape: readonly number[], dtype: 'F32' | 'BF16' | 'F16'): [HostTensor, Float32Array] {
  if (dtype === 'F32') return [{ dtype, shape, data: values }, values];
  const bits = Uint16Array.from(values, dtype === 'BF16' ? f32ToBf16 : f32ToF16);
  return [{ dtype, shape, data: bits }, Float32Array.from(bits, dtype === 'BF16' ? bf16ToF32 : f16ToF32)];
}

/** A tiny Llama config.json (override any field). */
export function llamaConfig(overrides: Json = {}): Json {
  return {
    model_type: 'llama',
    vocab_size: 20,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_parameters: { rope_type: 'default', rope_theta: 10000 },
    tie_word_embeddings: false,
    ...overrides,
  };
}

/** A tiny GPT-2 config.json (override any field). */
export function gpt2Config(overrides: Json = {}): Json {
  return {
    model_type: 'gpt2',
    vocab_size: 20,
    n_positions: 16,
    n_embd: 12,
    n_layer: 2,
    n_head: 3,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
    ...overrides,
  };
}
