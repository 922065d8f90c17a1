/** saveModel reproduces the loaded checkpoint's names, layout and dtypes, atomically. */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bf16ToF32, f32ToBf16, Layer, type Tensor, tensor } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createModel, MissingWeightError, OutputExistsError, WeightShapeError } from '../src/index.js';
import { loadModel, saveModel } from '../src/node.js';
import { gpt2Config, llamaConfig, shardName, writeCheckpoint } from './checkpoints.js';
import { baseDir, cpu, rejection, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  tmp = await tempDir();
});
afterEach(async () => {
  await tmp.cleanup();
});

describe('saveModel', () => {
  it.each(['llama', 'gpt2', 'llama_embed'])('writes the %s fixture back byte for byte, with config and companions', async (name) => {
    const backend = cpu();
    const { model, checkpoint } = await loadModel(baseDir(name), { backend });
    const out = join(tmp.dir, 'out');
    await saveModel(model, out, { like: checkpoint });
    expect(await readFile(join(out, 'model.safetensors'))).toEqual(await readFile(join(baseDir(name), 'model.safetensors')));
    expect(await readFile(join(out, 'config.json'), 'utf8')).toBe(await readFile(join(baseDir(name), 'config.json'), 'utf8'));
    expect((await readdir(out)).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('keeps shards, the index, BF16, buffers and prefix-less names; writes changed values narrowed', async () => {
    const src = join(tmp.dir, 'src');
    await mkdir(src);
    const mask = { dtype: 'U8' as const, shape: [1, 1, 2, 2], data: new Uint8Array([1, 0, 1, 1]) };
    await writeCheckpoint(src, gpt2Config(), {
      dtype: 'BF16',
      shards: 2,
      rename: (k) => k.replace(/^transformer\./, ''),
      extra: { 'h.0.attn.bias': mask },
    });
    await writeFile(join(src, 'tokenizer.json'), '{"tok": true}');
    const { model, checkpoint } = await loadModel(src, { backend: cpu() });
    const changed = new Float32Array(12).map((_, i) => 1 + i / 7);
    const ln = model.stateDict().get('transformer.ln_f.weight')!;
    const value = tensor(changed, [12], { backend: ln.backend });
    ln.assign(value);
    value.dispose();

    const out = join(tmp.dir, 'out');
    await saveModel(model, out, { like: checkpoint });
    expect((await readdir(out)).sort()).toEqual(
      ['config.json', 'model.safetensors.index.json', shardName(0, 2), shardName(1, 2), 'tokenizer.json'].sort(),
    );
    expect(JSON.parse(await readFile(join(out, 'model.safetensors.index.json'), 'utf8'))).toEqual(
      JSON.parse(await readFile(join(src, 'model.safetensors.index.json'), 'utf8')),
    );
    for (const shard of [shardName(0, 2), shardName(1, 2)]) {
      const before = (await readSafetensors(join(src, shard))).tensors;
      const after = (await readSafetensors(join(out, shard))).tensors;
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [key, t] of after) {
        expect(t.dtype, key).toBe(before.get(key)!.dtype);
        expect(t.shape, key).toEqual(before.get(key)!.shape);
        if (key === 'ln_f.weight')
          expect(Array.from(t.data as Uint16Array, bf16ToF32)).toEqual(Array.from(changed, (v) => bf16ToF32(f32ToBf16(v))));
        else expect(t.data, key).toEqual(before.get(key)!.data);
      }
    }
    model.dispose();
  });

  it('refuses a non-empty output folder and leaves it untouched; an empty one is fine', async () => {
    const { model, checkpoint } = await loadModel(baseDir('gpt2'), { backend: cpu() });
    const out = join(tmp.dir, 'out');
    await mkdir(out);
    await saveModel(model, out, { like: checkpoint });
    const error = await rejection(saveModel(model, out, { like: checkpoint }));
    expect(error).toBeInstanceOf(OutputExistsError);
    expect(error.message).toContain(out);
    expect((await readdir(tmp.dir)).sort()).toEqual(['out']);
    model.dispose();
  });

  it('checks names and shapes before writing anything', async () => {
    const { model: llama, checkpoint } = await loadModel(baseDir('llama'), { backend: cpu() });
    const config = JSON.parse(checkpoint.config.text) as Record<string, unknown>;
    const shallower = createModel({ ...config, num_hidden_layers: 1 }, { backend: cpu() });
    const missing = await rejection(saveModel(shallower, join(tmp.dir, 'a'), { like: checkpoint }));
    expect(missing).toBeInstanceOf(MissingWeightError);
    expect(missing.message).toBe(
      "model LlamaForCausalLM (merge and unload adapters before saving): missing weight 'model.layers.1.input_layernorm.weight'",
    );

    const narrower = createModel({ ...config, intermediate_size: 8 }, { backend: cpu() });
    const shape = await rejection(saveModel(narrower, join(tmp.dir, 'b'), { like: checkpoint }));
    expect(shape).toBeInstanceOf(WeightShapeError);
    expect(shape.message).toBe(
      "model LlamaForCausalLM: weight 'model.layers.0.mlp.down_proj.weight' is [32, 64] in the checkpoint but [32, 8] in the model",
    );

    // An adapter-wrapped layer keeps its weight under base_layer until merged and unloaded.
    const wrapped = createModel(config, { backend: cpu() });
    const q = wrapped.getSubmodule('model.layers.0.self_attn.q_proj') as Layer;
    class Wrapper extends Layer {
      base_layer = q;
      forward(x: Tensor): Tensor {
        return this.base_layer.forward(x);
      }
    }
    wrapped.setSubmodule('model.layers.0.self_attn.q_proj', new Wrapper());
    const unmerged = await rejection(saveModel(wrapped, join(tmp.dir, 'c'), { like: checkpoint }));
    expect(unmerged).toMatchObject({ key: 'model.layers.0.self_attn.q_proj.weight' });
    expect(await readdir(tmp.dir)).toEqual([]);
    for (const m of [llama, shallower, narrower, wrapped]) m.dispose();
  });

  it('leaves no output and no temporary folder when writing fails half-way', async () => {
    const src = join(tmp.dir, 'src');
    await mkdir(src);
    await writeCheckpoint(src, llamaConfig(), { shards: 2 });
    const { model, checkpoint } = await loadModel(src, { backend: cpu() });
    // A parameter that cannot be read back, in the second shard: the first shard is written by then.
    const victim = checkpoint.tensors.find((t) => t.file === shardName(1, 2))!;
    model.stateDict().get(victim.parameter!)!.dispose();
    const error = await rejection(saveModel(model, join(tmp.dir, 'out'), { like: checkpoint }));
    expect(error.name).toBe('DisposedTensorError');
    expect((await readdir(tmp.dir)).sort()).toEqual(['src']);
    model.dispose();
  });
});
