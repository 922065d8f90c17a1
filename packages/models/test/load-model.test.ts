/** loadModel on real folders: layouts, dtypes, key prefixes, and a typed error for each bad input. */
import { copyFile, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Backend, noGrad, SafetensorsError, tidy } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import {
  MissingWeightError,
  ModelFolderError,
  NoWeightsError,
  ShardIndexError,
  tokenIds,
  UnsupportedModelError,
  WeightDTypeError,
  WeightShapeError,
} from '../src/index.js';
import { loadModel } from '../src/node.js';
import { gpt2Config, llamaConfig, shardName, writeCheckpoint } from './checkpoints.js';
import { baseDir, cpu, rejection, useTempFolders } from './helpers.js';
import { referenceGPT2, referenceLlama } from './reference.js';
import { relativeError } from '@dorajs/backend-conformance';

const folder = useTempFolders();

const IDS = [[4, 9, 1, 16, 0]];

async function logits(dir: string, backend: Backend): Promise<Float32Array> {
  const { model } = await loadModel(dir, { backend });
  const ids = tokenIds(IDS, { vocabSize: model.vocabSize, backend });
  const out = tidy(() => noGrad(() => model.forward(ids)));
  const values = await out.float32();
  out.dispose();
  ids.dispose();
  model.dispose();
  return values;
}

describe('checkpoint layouts and dtypes', () => {
  it('loads shards through model.safetensors.index.json exactly like one file', async () => {
    const single = await folder();
    const sharded = await folder();
    await writeCheckpoint(single, llamaConfig(), { seed: 4 });
    await writeCheckpoint(sharded, llamaConfig(), { seed: 4, shards: 3 });
    const backend = cpu();
    const { checkpoint } = await loadModel(sharded, { backend }).then((l) => (l.model.dispose(), l));
    expect(checkpoint.layout.kind).toBe('sharded');
    expect(checkpoint.layout.files).toEqual([0, 1, 2].map((i) => shardName(i, 3)));
    expect(await logits(sharded, backend)).toEqual(await logits(single, backend));
    expect(backend.liveBuffers()).toBe(0);
  });

  it.each(['BF16', 'F16'] as const)('widens %s to float32 and remembers the stored dtype', async (dtype) => {
    const dir = await folder();
    const config = gpt2Config();
    const weights = await writeCheckpoint(dir, config, { seed: 5, dtype });
    const backend = cpu();
    const { model, checkpoint } = await loadModel(dir, { backend });
    expect(new Set(checkpoint.tensors.map((t) => t.dtype))).toEqual(new Set([dtype]));
    expect(await model.stateDict().get('transformer.h.1.mlp.c_fc.weight')!.float32()).toEqual(
      weights.get('transformer.h.1.mlp.c_fc.weight'),
    );
    model.dispose();
    const want = referenceGPT2(config, weights, IDS[0]!).flatMap((r) => [...r]);
    expect(relativeError(await logits(dir, backend), want)).toBeLessThan(1e-5);
  });

  it('accepts checkpoints saved without the backbone prefix (GPT-2 from the Hub: h.0…, wte.weight)', async () => {
    const dir = await folder();
    const config = gpt2Config();
    const weights = await writeCheckpoint(dir, config, { rename: (k) => k.replace(/^transformer\./, '') });
    const backend = cpu();
    const { model, checkpoint } = await loadModel(dir, { backend });
    expect(checkpoint.tensors.find((t) => t.key === 'wte.weight')?.parameter).toBe('transformer.wte.weight');
    model.dispose();
    const want = referenceGPT2(config, weights, IDS[0]!).flatMap((r) => [...r]);
    expect(relativeError(await logits(dir, backend), want)).toBeLessThan(1e-5);
  });

  it('keeps buffers and unknown tensors for saving, reporting only the unknown ones', async () => {
    const dir = await folder();
    const mask = { dtype: 'U8' as const, shape: [1, 1, 4, 4], data: new Uint8Array(16).fill(1) };
    const odd = { dtype: 'F32' as const, shape: [2], data: new Float32Array([1, 2]) };
    await writeCheckpoint(dir, gpt2Config(), { extra: { 'transformer.h.0.attn.bias': mask, 'score.weight': odd } });
    const { model, checkpoint } = await loadModel(dir, { backend: cpu() });
    expect(
      checkpoint.tensors
        .filter((t) => t.parameter === null)
        .map((t) => t.key)
        .sort(),
    ).toEqual(['score.weight', 'transformer.h.0.attn.bias']);
    expect(checkpoint.unexpectedKeys).toEqual(['score.weight']);
    model.dispose();
  });

  it('streams: one upload per weight, no initialisation uploads, each weight held once', async () => {
    const dir = await folder();
    const values = await writeCheckpoint(dir, llamaConfig({ tie_word_embeddings: true }));
    const backend = cpu();
    let uploads = 0;
    let uploaded = 0;
    const counting: Backend = Object.assign(Object.create(backend) as Backend, {
      upload: (v: Float32Array, shape: readonly number[], dtype: 'float32') => {
        uploads++;
        uploaded += v.length;
        return backend.upload(v, shape, dtype);
      },
      // The streamed path (each weight written piece by piece into its storage) counts as one upload.
      beginUpload: (shape: readonly number[], dtype: 'float32') => {
        uploads++;
        uploaded += shape.reduce((a, b) => a * b, 1);
        return backend.beginUpload!(shape, dtype);
      },
    });
    const { model } = await loadModel(dir, { backend: counting });
    const total = [...values.values()].reduce((s, v) => s + v.length, 0);
    expect(uploads).toBe(values.size);
    expect(uploaded).toBe(total);
    expect(backend.liveBuffers()).toBe(values.size);
    model.dispose();
    expect(backend.liveBuffers()).toBe(0);
  });

  it('releases everything it uploaded when loading fails half-way', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig());
    const backend = cpu();
    let uploads = 0;
    const failing: Backend = Object.assign(Object.create(backend) as Backend, {
      upload: (v: Float32Array, shape: readonly number[], dtype: 'float32') => {
        if (++uploads === 6) throw new Error('device out of memory');
        return backend.upload(v, shape, dtype);
      },
      beginUpload: (shape: readonly number[], dtype: 'float32') => {
        if (++uploads === 6) throw new Error('device out of memory');
        return backend.beginUpload!(shape, dtype);
      },
    });
    expect((await rejection(loadModel(dir, { backend: failing }))).message).toBe('device out of memory');
    expect(backend.liveBuffers()).toBe(0);
  });

  it('loads the Llama fixture in file order and reports F32', async () => {
    const { model, checkpoint } = await loadModel(baseDir('llama'), { backend: cpu() });
    expect(checkpoint.layout).toEqual({ kind: 'single', files: ['model.safetensors'] });
    expect(checkpoint.modelType).toBe('llama');
    expect(checkpoint.fileMetadata.get('model.safetensors')).toEqual({ format: 'pt' });
    expect(checkpoint.tensors.every((t) => t.dtype === 'F32')).toBe(true);
    model.dispose();
  });
});

describe('bad input', () => {
  it('a folder without weights', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'config.json'), JSON.stringify(llamaConfig()));
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(NoWeightsError);
    expect(error.message).toBe(`${dir}: no weights found (expected model.safetensors or model.safetensors.index.json)`);
    await writeFile(join(dir, 'pytorch_model.bin'), 'pickle');
    expect((await rejection(loadModel(dir, { backend: cpu() }))).message).toMatch(/found pytorch_model\.bin/);
  });

  it('a folder without config.json, or with broken JSON', async () => {
    const dir = await folder();
    let error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelFolderError);
    expect(error.message).toContain(join(dir, 'config.json'));
    await writeFile(join(dir, 'config.json'), '{"model_type": "llama",');
    error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ModelFolderError);
    expect(error.message).toMatch(/config\.json: is not valid JSON/);
  });

  it('an unsupported model_type names the type and the file', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(UnsupportedModelError);
    expect(error.message).toBe(
      `${join(dir, 'config.json')}: unsupported model_type 'bert' (supported: llama, qwen2, qwen3, mistral, phi3, gemma2, gpt2)`,
    );
  });

  it('a missing weight names the key and the file', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { omit: ['model.layers.1.mlp.up_proj.weight'] });
    const backend = cpu();
    const error = await rejection(loadModel(dir, { backend }));
    expect(error).toBeInstanceOf(MissingWeightError);
    expect(error).toMatchObject({ key: 'model.layers.1.mlp.up_proj.weight', file: join(dir, 'model.safetensors') });
    expect(backend.liveBuffers()).toBe(0);
  });

  it('an untied Llama without lm_head.weight is missing a weight', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { omit: ['lm_head.weight'] });
    expect(await rejection(loadModel(dir, { backend: cpu() }))).toMatchObject({ key: 'lm_head.weight' });
  });

  it('a shape mismatch names the key and both shapes', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig());
    await writeFile(join(dir, 'config.json'), JSON.stringify(llamaConfig({ intermediate_size: 30 })));
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(WeightShapeError);
    expect(error.message).toBe(
      `${join(dir, 'model.safetensors')}: weight 'model.layers.0.mlp.down_proj.weight' is [16, 24] in the checkpoint but [16, 30] in the model`,
    );
  });

  it('a truncated safetensors file is a SafetensorsError naming the file', async () => {
    const dir = await folder();
    await copyFile(join(baseDir('llama'), 'config.json'), join(dir, 'config.json'));
    const file = join(dir, 'model.safetensors');
    await copyFile(join(baseDir('llama'), 'model.safetensors'), file);
    const size = (await readFile(file)).byteLength;
    await truncate(file, size - 100);
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error.message).toContain(file);
  });

  it('an integer tensor where a weight belongs', async () => {
    const dir = await folder();
    const ints = { dtype: 'I32' as const, shape: [16], data: new Int32Array(16) };
    await writeCheckpoint(dir, llamaConfig(), { omit: ['model.norm.weight'], extra: { 'model.norm.weight': ints } });
    const error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(WeightDTypeError);
    expect(error.message).toMatch(/weight 'model\.norm\.weight' is I32/);
  });

  it('a shard index that points at a missing shard, a path, or a key its shard lacks', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { shards: 2 });
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    const write = (map: Record<string, string>) => writeFile(indexPath, JSON.stringify({ ...index, weight_map: map }));

    await write({ ...index.weight_map, 'model.norm.weight': 'model-00009-of-00009.safetensors' });
    let error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(ShardIndexError);
    expect(error.message).toMatch(/lists shard 'model-00009-of-00009\.safetensors', which does not exist/);

    await write({ ...index.weight_map, 'model.norm.weight': '../elsewhere.safetensors' });
    expect(await rejection(loadModel(dir, { backend: cpu() }))).toBeInstanceOf(ShardIndexError);

    const wrongShard = index.weight_map['model.norm.weight'] === shardName(0, 2) ? shardName(1, 2) : shardName(0, 2);
    await write({ ...index.weight_map, 'model.norm.weight': wrongShard });
    error = await rejection(loadModel(dir, { backend: cpu() }));
    expect(error).toBeInstanceOf(MissingWeightError);
    expect(error).toMatchObject({ key: 'model.norm.weight', file: join(dir, wrongShard) });

    await writeFile(indexPath, '{"weight_map": 3}');
    expect(await rejection(loadModel(dir, { backend: cpu() }))).toBeInstanceOf(ShardIndexError);
  });
});

describe('reference check of a loaded Llama', () => {
  it('matches the float64 reference through a BF16 sharded checkpoint', async () => {
    const dir = await folder();
    const config = llamaConfig();
    const weights = await writeCheckpoint(dir, config, { dtype: 'BF16', shards: 2, seed: 9 });
    const want = referenceLlama(config, weights, IDS[0]!).flatMap((r) => [...r]);
    expect(relativeError(await logits(dir, cpu()), want)).toBeLessThan(1e-5);
  });
});
