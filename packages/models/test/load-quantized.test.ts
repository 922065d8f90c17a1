/**
 * Quantized models: transformers' bitsandbytes checkpoints (fixtures/bnb, written by a numpy port of
 * bitsandbytes' QuantState.as_dict) load as is and save back in the same layout; loadModel({ quantize })
 * quantizes a float checkpoint while streaming it; bad quant states are typed errors naming file and key,
 * with nothing left on the backend.
 */
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { relativeError } from '@dorajs/backend-conformance';
import {
  bf16ToF32,
  dequantizeLinear,
  type HostTensor,
  type Layer,
  Linear,
  type Module,
  noGrad,
  ops,
  QuantizationError,
  QuantizedLinear,
  quantizeHost,
  tidy,
} from '@dorajs/core';
import { openSafetensors, saveSafetensors } from '@dorajs/core/node';
import { describe, expect, it } from 'vitest';
import { QuantStateError, tokenIds } from '../src/index.js';
import { loadModel, saveModel } from '../src/node.js';
import { llamaConfig, writeCheckpoint } from './checkpoints.js';
import { cpu, rejection, useTempFolders } from './helpers.js';

const BNB = fileURLToPath(new URL('../../../fixtures/bnb/', import.meta.url));
const KINDS = ['nf4', 'fp4', 'int8'] as const;
const IDS = [[3, 17, 4, 8, 15, 1]];
const folder = useTempFolders();

async function readAll(file: string): Promise<Map<string, HostTensor>> {
  const f = await openSafetensors(file);
  try {
    const out = new Map<string, HostTensor>();
    for (const k of f.keys) out.set(k, await f.read(k));
    return out;
  } finally {
    await f.close();
  }
}

const quantized = (m: Module) => m.namedModules().filter((e): e is [string, QuantizedLinear] => e[1] instanceof QuantizedLinear);

/** The same model with every QuantizedLinear replaced by a float32 Linear of its dequantized weight. */
function denseTwin(model: Module): void {
  for (const [path, q] of quantized(model)) model.setSubmodule(path, dequantizeLinear(q));
}

async function logits(model: Layer & { vocabSize: number }, backend = cpu()): Promise<Float32Array> {
  const ids = tokenIds(IDS, { vocabSize: model.vocabSize, backend });
  const out = tidy(() => noGrad(() => model.forward(ids)));
  const v = await out.float32();
  out.dispose();
  ids.dispose();
  return v;
}

describe('transformers bitsandbytes checkpoints', () => {
  it.each(KINDS)(
    '%s: loads as is — every Linear but lm_head quantized, weights = bitsandbytes dequantized, forward = dense twin',
    async (kind) => {
      const backend = cpu();
      const { model } = await loadModel(join(BNB, `llama_${kind}`), { backend });
      const q = quantized(model);
      expect(q.length).toBe(14);
      expect(model.getSubmodule('lm_head')).toBeInstanceOf(Linear);
      expect(q.every(([, l]) => l.format === kind)).toBe(true);
      expect(q.every(([, l]) => (l.weight.nested !== null) === (kind === 'nf4'))).toBe(true);
      const expected = await readAll(join(BNB, `expected_${kind}.safetensors`));
      for (const [path, layer] of q) {
        const w = ops.dequantize(layer.weight);
        expect(await w.float32(), path).toEqual(expected.get(`${path}.weight`)!.data);
        w.dispose();
      }
      const got = await logits(model, backend);
      denseTwin(model);
      const want = await logits(model, backend);
      expect(relativeError(got, want)).toBeLessThanOrEqual(1e-5);
      model.dispose();
    },
  );

  it.each(KINDS)('%s: saveModel writes the same keys, dtypes, shapes and bytes (quant_state JSON included)', async (kind) => {
    const backend = cpu();
    const src = join(BNB, `llama_${kind}`);
    const loaded = await loadModel(src, { backend });
    const out = join(await folder(), 'saved');
    await saveModel(loaded.model, out, { like: loaded.checkpoint });
    const want = await readAll(join(src, 'model.safetensors'));
    const got = await readAll(join(out, 'model.safetensors'));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, v] of want) {
      const g = got.get(k)!;
      expect([g.dtype, g.shape], k).toEqual([v.dtype, v.shape]);
      expect(g.data, k).toEqual(v.data);
    }
    expect(await readFile(join(out, 'config.json'), 'utf8')).toBe(await readFile(join(src, 'config.json'), 'utf8'));
    loaded.model.dispose();
  });
});

describe('loadModel({ quantize })', () => {
  it.each([
    ['nf4', { format: 'nf4', doubleQuant: true }],
    ['fp4', 'fp4'],
    ['int8', 'int8'],
  ] as const)(
    '%s: quantizes a BF16 checkpoint while streaming; saved in bitsandbytes layout with quantization_config; reloads identical',
    async (_name, spec) => {
      const dir = await folder();
      const config = llamaConfig();
      await writeCheckpoint(dir, config, { seed: 9, dtype: 'BF16' });
      const backend = cpu();
      const { model, checkpoint } = await loadModel(dir, { backend, quantize: spec });
      const q = quantized(model);
      expect(q.length).toBeGreaterThan(0);
      expect(model.getSubmodule('lm_head')).not.toBeInstanceOf(QuantizedLinear);
      expect(model.namedParameters().some(([k]) => k.includes('embed_tokens'))).toBe(true);
      // Bit-exact with bitsandbytes' algorithm on the checkpoint's values.
      const [path, layer] = q[0]!;
      const stored = (await readAll(join(dir, 'model.safetensors'))).get(`${path}.weight`)!;
      const values = Float32Array.from(stored.data as Uint16Array, bf16ToF32);
      const format = typeof spec === 'string' ? spec : spec.format;
      const want = quantizeHost(values, layer.weight.shape, typeof spec === 'string' ? { format } : spec);
      expect((await layer.weight.toHost()).data).toEqual(want.data);

      const out = join(await folder(), 'saved');
      await saveModel(model, out, { like: checkpoint });
      const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      expect(cfg.quantization_config.quant_method).toBe('bitsandbytes');
      expect(cfg.quantization_config.load_in_4bit).toBe(format !== 'int8');
      expect(cfg.quantization_config.bnb_4bit_quant_type).toBe(format === 'int8' ? 'fp4' : format);
      const saved = await readAll(join(out, 'model.safetensors'));
      if (format === 'int8') {
        expect(saved.get(`${path}.weight`)!.dtype).toBe('I8');
        expect(saved.get(`${path}.SCB`)!.shape).toEqual([layer.outFeatures]);
        expect(saved.get(`${path}.weight_format`)!.shape).toEqual([]);
      } else {
        const n = layer.inFeatures * layer.outFeatures;
        expect(saved.get(`${path}.weight`)!.shape).toEqual([Math.ceil(n / 2), 1]);
        const state = saved.get(`${path}.weight.quant_state.bitsandbytes__${format}`)!;
        expect(JSON.parse(new TextDecoder().decode(state.data as Uint8Array))).toMatchObject({
          quant_type: format,
          blocksize: 64,
          dtype: 'bfloat16',
          shape: [layer.outFeatures, layer.inFeatures],
        });
      }
      const before = await logits(model, backend);
      const again = await loadModel(out, { backend });
      expect(quantized(again.model).length).toBe(q.length);
      expect(relativeError(await logits(again.model, backend), before)).toBe(0);
      model.dispose();
      again.model.dispose();
    },
  );

  it('refuses an unknown format before reading anything', async () => {
    const dir = await folder();
    await writeCheckpoint(dir, llamaConfig(), { seed: 2 });
    const backend = cpu();
    const err = await rejection(loadModel(dir, { backend, quantize: 'int4' as 'int8' }));
    expect(err).toBeInstanceOf(QuantizationError);
    expect(err.message).toBe("quantize: quant type 'int4' is not supported (nf4, fp4 or int8)");
    expect(backend.liveBuffers()).toBe(0);
  });
});

describe('bad bitsandbytes checkpoints: typed errors naming file and key, nothing loaded', () => {
  const LAYER = 'model.layers.1.mlp.down_proj.weight';

  /** A copy of a fixture with `edit` applied to its tensors. */
  async function broken(kind: (typeof KINDS)[number], edit: (t: Map<string, HostTensor>) => void): Promise<string> {
    const dir = await folder();
    await cp(join(BNB, `llama_${kind}`), dir, { recursive: true });
    const tensors = await readAll(join(dir, 'model.safetensors'));
    edit(tensors);
    await saveSafetensors(join(dir, 'model.safetensors'), tensors);
    return dir;
  }

  const state = (t: Map<string, HostTensor>, kind: 'nf4' | 'fp4', patch: (j: Record<string, unknown>) => void) => {
    const key = `${LAYER}.quant_state.bitsandbytes__${kind}`;
    const j = JSON.parse(new TextDecoder().decode(t.get(key)!.data as Uint8Array));
    patch(j);
    const bytes = new TextEncoder().encode(JSON.stringify(j));
    t.set(key, { dtype: 'U8', shape: [bytes.length], data: bytes });
  };

  const cases: [string, (typeof KINDS)[number], (t: Map<string, HostTensor>) => void, string][] = [
    ['a missing absmax', 'fp4', (t) => t.delete(`${LAYER}.absmax`), `'${LAYER}.absmax' is missing (one absmax per block of 64)`],
    ['a block size bitsandbytes lacks', 'fp4', (t) => state(t, 'fp4', (j) => (j['blocksize'] = 100)), "field 'blocksize' is 100"],
    [
      'a block size that does not fit absmax',
      'fp4',
      (t) => state(t, 'fp4', (j) => (j['blocksize'] = 128)),
      `'${LAYER}.absmax' is [96], expected [48]`,
    ],
    [
      'a shape that is not the layer',
      'fp4',
      (t) => state(t, 'fp4', (j) => (j['shape'] = [96, 64])),
      "says shape [96, 64] but the model's weight is [64, 96]",
    ],
    [
      'a huge quant_type value (previewed, not printed whole)',
      'fp4',
      (t) => state(t, 'fp4', (j) => (j['quant_type'] = 'x'.repeat(3000))),
      "field 'quant_type' is \"xxxx",
    ],
    [
      'a quant state nested 2000 deep',
      'nf4',
      (t) => {
        const bytes = new TextEncoder().encode(`${'['.repeat(2000)}${']'.repeat(2000)}`);
        t.set(`${LAYER}.quant_state.bitsandbytes__nf4`, { dtype: 'U8', shape: [bytes.length], data: bytes });
      },
      'is not valid JSON (pack_dict_to_tensor): JSON nested more than',
    ],
    ['an unknown original dtype', 'fp4', (t) => state(t, 'fp4', (j) => (j['dtype'] = 'int4')), `field 'dtype' is "int4"`],
    ['nested stats without their tensors', 'nf4', (t) => t.delete(`${LAYER}.nested_absmax`), `'${LAYER}.nested_absmax' is missing`],
    [
      'nested fields only in part',
      'nf4',
      (t) => state(t, 'nf4', (j) => delete j['nested_offset']),
      'is given without the other nested_* fields',
    ],
    ['a non-finite nested offset', 'nf4', (t) => state(t, 'nf4', (j) => (j['nested_offset'] = 'nan')), 'field \'nested_offset\' is "nan"'],
    [
      'nested absmax of the wrong length',
      'nf4',
      (t) => t.set(`${LAYER}.nested_absmax`, { dtype: 'F32', shape: [2], data: new Float32Array(2) }),
      `'${LAYER}.nested_absmax' is [2], expected [1]`,
    ],
    [
      'a truncated packed weight',
      'nf4',
      (t) => t.set(LAYER, { dtype: 'U8', shape: [100, 1], data: new Uint8Array(100) }),
      `'${LAYER}' is [100, 1]`,
    ],
    [
      'a foreign quant_map',
      'nf4',
      (t) => t.set(`${LAYER}.quant_map`, { dtype: 'F32', shape: [16], data: new Float32Array(16) }),
      "differs from bitsandbytes' nf4 code",
    ],
    [
      'an unsupported quant type',
      'fp4',
      (t) => {
        const k = `${LAYER}.quant_state.bitsandbytes__fp4`;
        t.set(`${LAYER}.quant_state.bitsandbytes__af4`, t.get(k)!);
        t.delete(k);
      },
      "has quant type 'af4', which dorajs does not support",
    ],
    ['an int8 weight without SCB', 'int8', (t) => t.delete('model.layers.1.mlp.down_proj.SCB'), 'has no SCB beside it'],
    [
      'a column-major int8 layout',
      'int8',
      (t) => t.set('model.layers.1.mlp.down_proj.weight_format', { dtype: 'U8', shape: [], data: new Uint8Array([1]) }),
      "is 1: only bitsandbytes' row-major layout (0) is supported",
    ],
  ];

  it.each(cases)('%s', async (_what, kind, edit, message) => {
    const dir = await broken(kind, edit);
    const backend = cpu();
    const err = await rejection(loadModel(dir, { backend }));
    expect(err).toBeInstanceOf(QuantStateError);
    expect(err.message).toContain(join(dir, 'model.safetensors'));
    expect(err.message).toContain(message);
    // One line, bounded: values from the file are previewed, never printed whole.
    expect(err.message).not.toContain('\n');
    expect(err.message.length).toBeLessThan(1000);
    expect(backend.liveBuffers()).toBe(0);
  });
});
