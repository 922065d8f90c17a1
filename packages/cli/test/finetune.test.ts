import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dora, FIXTURES, readTensors, tempDir, tinyLlamaFolder } from './helpers.js';

describe.each(['cpu', 'tfjs', 'webgpu'])('dora finetune --max-steps 2 (%s)', (backend) => {
  it('trains the built-in MNIST job briefly and writes a PEFT-format DoRA adapter', async () => {
    const out = join(tempDir(), 'adapter');
    const r = await dora('finetune', '--max-steps', '2', '--output', out, '--backend', backend);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`backend ${backend}`);
    expect(r.stdout).toMatch(/train_runtime/);
    expect(r.stdout).toMatch(/train_samples_per_second/);
    expect(r.stdout).toMatch(/train_steps_per_second/);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config.peft_type).toBe('LORA');
    expect(config.use_dora).toBe(true);
    expect(config.inference_mode).toBe(true);
    const keys = [...readTensors(join(out, 'adapter_model.safetensors')).keys()];
    expect(keys.some((k) => k.startsWith('base_model.model.') && k.endsWith('.lora_magnitude_vector'))).toBe(true);
    expect(keys.some((k) => k.endsWith('.lora_A.weight'))).toBe(true);
  });
});

describe('dora finetune --quantize', () => {
  it.each(['nf4', 'int8'])(
    '%s: QDoRA on a quantized base writes an ordinary PEFT adapter (same keys as on the float base)',
    async (kind) => {
      const dir = tempDir();
      const model = tinyLlamaFolder(dir);
      const data = join(dir, 'train.jsonl');
      writeFileSync(data, '{"text": "a b c a"}\n{"text": "b c a b"}\n');
      const keys: string[][] = [];
      for (const quantize of [[], ['--quantize', kind], ['--quantize', kind, '--gradient-checkpointing']]) {
        const out = join(dir, `out${keys.length}`);
        const r = await dora(
          'finetune',
          '--model',
          model,
          '--data',
          data,
          '--output',
          out,
          '--backend',
          'cpu',
          '--max-steps',
          '1',
          '--eval-step',
          '0',
          ...quantize,
        );
        expect(r.code, r.stderr).toBe(0);
        if (quantize.length) expect(r.stderr + r.stdout).toMatch(new RegExp(`quantized base: \\d+ Linear layers in ${kind}`));
        expect(r.stdout).toMatch(/train_runtime/);
        expect((r.stderr + r.stdout).includes('gradient checkpointing: each decoder layer runs again in backward')).toBe(
          quantize.includes('--gradient-checkpointing'),
        );
        const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
        expect(config.use_dora).toBe(true);
        keys.push([...readTensors(join(out, 'adapter_model.safetensors')).keys()].sort());
      }
      expect(keys[1]).toEqual(keys[0]);
      expect(keys[2]).toEqual(keys[0]);
      expect(keys[1]!.some((k) => k.endsWith('.lora_magnitude_vector'))).toBe(true);
    },
  );
});

describe('dora finetune: bad input', () => {
  const oneLine = (r: { code: number; stderr: string }, re: RegExp) => {
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('dora: ') && !l.startsWith('dora: backend'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
  };

  it('--model without --data, contradictory flags, bad numbers', async () => {
    oneLine(await dora('finetune', '--model', join(FIXTURES, 'llama', 'base')), /^dora: UsageError: .*--data/);
    oneLine(await dora('finetune', '--use-dora', '--no-dora'), /^dora: UsageError: /);
    oneLine(await dora('finetune', '--lora-r', 'eight'), /^dora: UsageError: --lora-r expects an integer/);
  });

  it('a JSONL line that is not JSON names the file and the line', async () => {
    const dir = tempDir();
    const model = tinyLlamaFolder(dir);
    const data = join(dir, 'train.jsonl');
    writeFileSync(data, '{"text": "a b"}\n{not json}\n');
    const out = join(dir, 'out');
    oneLine(
      await dora('finetune', '--model', model, '--data', data, '--output', out, '--backend', 'cpu', '--max-steps', '1'),
      /^dora: DatasetError: .*train\.jsonl:2: not valid JSON/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('--quantize takes nf4, fp4 or int8, and needs a model', async () => {
    oneLine(await dora('finetune', '--quantize', 'int4'), /^dora: UsageError: --quantize: 'int4' is not one of nf4, fp4, int8$/);
    oneLine(await dora('finetune', '--quantize', 'nf4'), /^dora: UsageError: --quantize needs --model and --data/);
    oneLine(await dora('finetune', '--gradient-checkpointing'), /^dora: UsageError: --gradient-checkpointing needs --model and --data/);
  });

  it('a model folder of an unsupported architecture is named', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mamba' }));
    const data = join(dir, 'train.jsonl');
    writeFileSync(data, '{"text": "a b"}\n');
    oneLine(await dora('finetune', '--model', dir, '--data', data, '--backend', 'cpu'), /mamba/);
  });
});
