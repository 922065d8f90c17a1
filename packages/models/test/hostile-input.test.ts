/**
 * loadModel against a hostile model folder: deep or huge config.json values, sizes a checkpoint cannot
 * fill, named pipes instead of files, unused checkpoint tensors. Each ends in a typed one-line error
 * naming the file and field (or, for unused tensors, one warning naming them) — never a RangeError, a hang
 * or a cleanup error hiding the cause.
 */
import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SafetensorsError } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import { ModelConfigError, ModelFolderError, ModelSizeError, parseLlamaConfig, parseQwen2Config } from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig, writeCheckpoint } from './checkpoints.js';
import { cpu, rejection, useTempFolders } from './helpers.js';

const folder = useTempFolders();

/** A valid Llama checkpoint whose config.json is then replaced by `config`. */
async function withConfig(config: string | object): Promise<string> {
  const dir = await folder();
  await writeCheckpoint(dir, llamaConfig());
  await writeFile(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

describe('config.json values from strangers', () => {
  it('a value nested 100 000 deep is refused before parsing, naming the file (no stack overflow)', async () => {
    const deep = `{"model_type":"llama","rope_scaling":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const dir = await withConfig(deep);
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelFolderError);
    expect(error.message).toMatch(/config\.json: is JSON nested more than 64 levels deep \(at character \d+\)$/);
  });

  it('a wrong-typed field holding a huge deep value gets a short preview in the message', async () => {
    let value: unknown = 1;
    for (let i = 0; i < 60; i++) value = [value, 'x'.repeat(1000)];
    const dir = await withConfig({ ...llamaConfig(), hidden_size: value });
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(error.message.length).toBeLessThan(300);
    expect(error.message).toContain("'hidden_size' must be a positive integer, got [[");
  });

  it('found by the fuzzer: num_hidden_layers 2³¹−1 is refused while parsing, before any per-layer list', () => {
    const t0 = performance.now();
    expect(() => parseLlamaConfig({ ...llamaConfig(), num_hidden_layers: 2 ** 31 - 1 }, 'config.json')).toThrow(
      "config.json: 'num_hidden_layers' is 2147483647, over the limit of 1000000 layers",
    );
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('found by the fuzzer: an unknown activation, rope_type or a bad layer_types is named in a short message', () => {
    const long = 'x'.repeat(10_000);
    for (const [parse, config] of [
      [parseLlamaConfig, { ...llamaConfig(), hidden_act: long }],
      [parseLlamaConfig, { ...llamaConfig(), rope_scaling: { rope_type: long, factor: 2 } }],
      [parseQwen2Config, { ...llamaConfig(), model_type: 'qwen2', layer_types: [long, 'full_attention'] }],
    ] as const) {
      const error = (() => {
        try {
          parse(config, 'config.json');
        } catch (e) {
          return e as Error;
        }
        return null;
      })();
      expect(error).toBeInstanceOf(ModelConfigError);
      expect(error!.message.length).toBeLessThan(400);
    }
  });

  it('vocab_size: 1e12 is over the size limit', async () => {
    const dir = await withConfig({ ...llamaConfig(), vocab_size: 1e12 });
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelConfigError);
    expect(error.message).toBe(
      `${join(dir, 'config.json')}: 'vocab_size' is 1000000000000, over the limit of 2147483647 for any size or count`,
    );
  });

  it.each([
    ['num_hidden_layers', 200_000],
    ['vocab_size', 2 ** 31 - 1],
    ['intermediate_size', 50_000_000],
  ])('%s: %d is more than the checkpoint can fill: a ModelSizeError before allocating', async (field, value) => {
    const dir = await withConfig({ ...llamaConfig(), [field]: value });
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelSizeError);
    expect(error.message).toContain(`${join(dir, 'config.json')}: declares a model with more than`);
    expect(error.message).toContain(join(dir, 'model.safetensors'));
  });

  it('an oversized config.json is refused by its size, before reading', async () => {
    const dir = await withConfig(`{"model_type":"llama","pad":"${'x'.repeat(17 * 2 ** 20)}"}`);
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelFolderError);
    expect(error.message).toMatch(/over the 16777216-byte limit/);
  });
});

describe('named pipes are refused, never waited on', () => {
  it('as config.json and as model.safetensors', async () => {
    const a = await folder();
    await writeCheckpoint(a, llamaConfig());
    await rm(join(a, 'config.json'));
    execFileSync('mkfifo', [join(a, 'config.json')]);
    const e1 = await rejection(loadModel(a, { backend: cpu() }));
    expect(e1).toBeInstanceOf(ModelFolderError);
    expect(e1.message).toBe(`${join(a, 'config.json')}: cannot read config.json: not a regular file (a named pipe)`);

    const b = await folder();
    await writeCheckpoint(b, llamaConfig());
    await rm(join(b, 'model.safetensors'));
    execFileSync('mkfifo', [join(b, 'model.safetensors')]);
    const e2 = await rejection(loadModel(b, { backend: cpu() }));
    expect(e2).toBeInstanceOf(SafetensorsError);
    expect(e2.message).toBe(`${join(b, 'model.safetensors')}: not a regular file (a named pipe)`);
  });
});

describe('unused and missing checkpoint tensors (as transformers)', () => {
  it('warns once, naming them, about tensors the model does not use — not buffers', async () => {
    const dir = await folder();
    const f32 = (k: number) => ({ dtype: 'F32' as const, shape: [k], data: new Float32Array(k) });
    const mask = { dtype: 'U8' as const, shape: [1, 1, 4, 4], data: new Uint8Array(16) };
    await writeCheckpoint(dir, gpt2Config(), {
      extra: {
        'transformer.h.0.attn.bias': mask,
        'transformer.h.9.mlp.c_fc.weight': f32(3),
        'score.weight': f32(2),
      },
    });
    const warnings: string[] = [];
    const { model } = await loadModel(dir, { backend: cpu(), onWarning: (w) => warnings.push(w) });
    model.dispose();
    expect(warnings).toEqual([
      `${dir}: 2 checkpoint tensor(s) are not used by the model: 'score.weight', 'transformer.h.9.mlp.c_fc.weight' (kept, and written back when the model is saved)`,
    ]);
  });

  it('a clean checkpoint loads without a warning', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, gpt2Config());
    const warnings: string[] = [];
    const { model } = await loadModel(dir, { backend: cpu(), onWarning: (w) => warnings.push(w) });
    model.dispose();
    expect(warnings).toEqual([]);
  });

  it('a config.json with fewer layers than the checkpoint warns about the extra layers', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig());
    const config = llamaConfig() as { num_hidden_layers: number };
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: config.num_hidden_layers - 1 }));
    const warnings: string[] = [];
    const { model } = await loadModel(dir, { backend: cpu(), onWarning: (w) => warnings.push(w) });
    model.dispose();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`not used by the model: 'model\\.layers\\.${config.num_hidden_layers - 1}\\.`));
  });
});
