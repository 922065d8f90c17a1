import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  AdapterFileError,
  collectWarnings,
  configFromJsonText,
  configToJsonText,
  getPeftModel,
  LoraConfig,
  LoraConfigError,
  pythonJsonDumps,
  PyFloat,
} from '../src/index.js';
import { adapterFiles } from '../src/io/save-adapter.js';
import { pythonFloatRepr } from '../src/config/python-json.js';
import { cpu } from './helpers/backend.js';
import { fixturePath } from './helpers/fixtures.js';
import { MLP } from './helpers/models.js';

const peftText = (name: string) => readFile(fixturePath(name, 'adapter', 'adapter_config.json'), 'utf8');

describe('LoraConfig defaults and adapter_config.json', () => {
  it('has PEFT defaults', () => {
    const c = new LoraConfig();
    expect([c.r, c.loraAlpha, c.loraDropout, c.bias, c.initLoraWeights, c.useDora, c.useRslora, c.fanInFanOut]).toEqual([
      8,
      8,
      0,
      'none',
      true,
      false,
      false,
      false,
    ]);
    expect(c.targetModules).toBeNull();
    expect(c.rankPattern).toEqual({});
  });

  it('a fresh DoRA adapter writes the same config PEFT 0.21.0 wrote for it (every key, sorted, indent 2)', async () => {
    const backend = cpu();
    const peft = await getPeftModel(
      new MLP(backend),
      new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ['lin2', 'lin1'], useDora: true }),
    );
    const ours = JSON.parse((await adapterFiles(peft, 'default')).config) as Record<string, unknown>;
    const theirs = JSON.parse(await peftText('linear')) as Record<string, unknown>;
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    expect(ours['auto_mapping']).toEqual({ base_model_class: 'MLP', parent_library: '@dorajs/peft' });
    for (const key of Object.keys(theirs)) if (key !== 'auto_mapping') expect(ours[key], key).toEqual(theirs[key]);
  });

  it('reads and writes PEFT text byte for byte (float repr, key order, no trailing newline)', async () => {
    for (const name of ['linear', 'conv2d', 'llama', 'gpt2', 'lora_plain']) {
      const text = await peftText(name);
      expect(configToJsonText(configFromJsonText(text))).toBe(text);
    }
  });

  it('writes Python float reprs', () => {
    expect([0, 0.05, 1e-5, 1e16, 123, 1.5e-4, -2.5, 0.1 + 0.2].map(pythonFloatRepr)).toEqual([
      '0.0',
      '0.05',
      '1e-05',
      '1e+16',
      '123.0',
      '0.00015',
      '-2.5',
      '0.30000000000000004',
    ]);
    expect(pythonJsonDumps({ b: [], a: { y: new PyFloat(1), x: 'é' } })).toBe(
      '{\n  "a": {\n    "x": "\\u00e9",\n    "y": 1.0\n  },\n  "b": []\n}',
    );
  });

  it('keeps unknown keys (with a warning) and drops runtime_config', async () => {
    const json = JSON.parse(await peftText('linear')) as Record<string, unknown>;
    json['future_option'] = { depth: 3 };
    json['runtime_config'] = { ephemeral_gpu_offload: true };
    const { result: c, warnings } = collectWarnings(() => configFromJsonText(JSON.stringify(json)));
    expect(warnings.map((w) => w.code).sort()).toEqual(['runtime-config-dropped', 'unknown-config-key']);
    const again = JSON.parse(configToJsonText(c)) as Record<string, unknown>;
    expect(again['future_option']).toEqual({ depth: 3 });
    expect('runtime_config' in again).toBe(false);
    expect(c.ephemeralGpuOffload).toBe(false);
  });

  it('fills missing keys with PEFT defaults (older files)', () => {
    const c = configFromJsonText(JSON.stringify({ peft_type: 'LORA', r: 16, target_modules: ['q_proj'], use_dora: true }));
    expect([c.r, c.loraAlpha, c.bias, c.useDora]).toEqual([16, 8, 'none', true]);
    const written = JSON.parse(configToJsonText(c)) as Record<string, unknown>;
    expect(written['inference_mode']).toBe(true);
    expect(written['megatron_core']).toBe('megatron.core');
    expect(written['lora_dropout']).toBe(0);
  });
});

describe('LoraConfig validation (PEFT messages)', () => {
  it.each([
    [{ r: 0 }, '`r` should be a positive integer'],
    [{ r: 2.5 }, '`r` should be a positive integer'],
    [{ loraDropout: 1 }, 'lora_dropout must be in [0, 1)'],
    [{ useDora: true, loraBias: true }, 'The argument lora_bias=True is not supported for DoRA'],
    [{ useDora: true, extra: { megatron_config: { tp: 2 } } }, 'DoRA does not support megatron_core'],
    [{ useDora: true, extra: { velora_config: {} } }, "Invalid or unsupported variant combination: ('use_dora', 'velora_config')"],
    [{ targetModules: 'lin.*', layersToTransform: [0] }, '`layers_to_transform` cannot be used when `target_modules` is a str.'],
    [
      { targetModules: ['lin1'], layersPattern: 'layers' },
      'When `layers_pattern` is specified, `layers_to_transform` must also be specified.',
    ],
    [{ rankPattern: { lin1: 0 } }, "rank_pattern['lin1'] must be a positive integer"],
  ])('%j → %s', (options, message) => {
    expect(() => new LoraConfig(options)).toThrow(LoraConfigError);
    expect(() => new LoraConfig(options)).toThrow(message);
  });

  it('refuses features dorajs does not implement when creating an adapter', async () => {
    const backend = cpu();
    await expect(
      getPeftModel(new MLP(backend), new LoraConfig({ targetModules: ['lin1'], extra: { layer_replication: [[0, 1]] } })),
    ).rejects.toThrow(/layer_replication/);
    await expect(getPeftModel(new MLP(backend), new LoraConfig({ targetModules: ['lin1'], initLoraWeights: 'pissa' }))).rejects.toThrow(
      /init_lora_weights 'pissa'/,
    );
  });

  it.each([
    ['{"r": 4', 'not valid JSON'],
    ['[1, 2]', 'expected a JSON object'],
    ['{"r": 4}', "no 'peft_type' key"],
    ['{"peft_type": "IA3"}', "peft_type 'IA3' is not supported"],
    ['{"peft_type": "LORA", "r": "4"}', "'r' must be a number"],
    ['{"peft_type": "LORA", "bias": "some"}', "'bias' must be 'none', 'all' or 'lora_only'"],
    ['{"peft_type": "LORA", "use_dora": true, "lora_bias": true}', 'lora_bias=True is not supported for DoRA'],
  ])('config file %s → AdapterFileError (%s)', (text, message) => {
    expect(() => configFromJsonText(text, 'x/adapter_config.json')).toThrow(AdapterFileError);
    expect(() => configFromJsonText(text, 'x/adapter_config.json')).toThrow(message);
    expect(() => configFromJsonText(text, 'x/adapter_config.json')).toThrow('x/adapter_config.json');
  });
});
