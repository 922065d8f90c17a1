import { type Backend, DoraError } from '@dorajs/core';
import { UnsupportedModelError } from '@dorajs/models';
import { loadModel } from '@dorajs/models/node';
import { PeftModel } from '@dorajs/peft';
import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, loadTokenizer, ModelFolderError, parseJsonlTexts, runTextFinetune } from '../src/index.js';
import { testBackend } from './helpers.js';
import { tinyCorpus, writeTinyModelFolder } from './text-fixture.js';

let backend: Backend;
let root: string;
let llama: string;
let gpt2: string;
let data: string;
beforeAll(async () => {
  backend = await testBackend();
  root = await mkdtemp(join(tmpdir(), 'dorajs-text-'));
  llama = await writeTinyModelFolder(join(root, 'llama'), 'llama', backend);
  gpt2 = await writeTinyModelFolder(join(root, 'gpt2'), 'gpt2', backend);
  data = join(root, 'data.jsonl');
  await writeFile(data, tinyCorpus(40));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('JSONL text data', () => {
  it('names the file and line of a record that is not JSON or has no text', () => {
    expect(() => parseJsonlTexts('{"text": "a"}\n\n{"text": oops}\n', 'd.jsonl')).toThrow(/^d\.jsonl:3: not valid JSON/);
    const e = (() => {
      try {
        parseJsonlTexts('{"text": "a"}\n{"body": "b"}', 'd.jsonl');
      } catch (err) {
        return err as DatasetError;
      }
    })();
    expect(e).toBeInstanceOf(DatasetError);
    expect(e).toMatchObject({ file: 'd.jsonl', line: 2 });
    expect(() => parseJsonlTexts('\n\n', 'empty.jsonl')).toThrow(DatasetError);
    expect(parseJsonlTexts('{"text": "x"}\r\n{"text": "y"}', 'f').map((r) => r.line)).toEqual([1, 2]);
  });
});

describe('the model folder tokenizer', () => {
  it('encodes with tokenizer.json and finds EOS from tokenizer_config.json', async () => {
    const t = await loadTokenizer(llama);
    expect(t.encode('The cat')).toEqual([1, 34, 5, 3, 22]);
    expect(t.eosId).toBe(2);
  });
});

describe('runTextFinetune', () => {
  it('fine-tunes a tiny Llama with DoRA: eval loss falls, adapter and tokenizer are written and load back', async () => {
    const output = join(root, 'out-llama');
    const steps: number[] = [];
    const result = await runTextFinetune({
      model: llama,
      data,
      backend,
      maxSteps: 12,
      batchSize: 4,
      gradAccum: 2,
      lr: 2e-2,
      evalStep: 6,
      loraR: 4,
      output,
      log: () => {},
      onProgress: (p) => steps.push(p.step),
    });
    expect(steps).toHaveLength(12);
    expect(result.modelType).toBe('llama');
    expect(result.trainExamples).toBe(36);
    expect(result.evalExamples).toBe(4);
    expect(result.evalMetrics!.eval_loss).toBeLessThan(result.evalLossBefore! - 0.1);
    expect(result.metrics).toHaveProperty('train_samples_per_second');
    expect((await readdir(output)).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const config = JSON.parse(await readFile(join(output, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ use_dora: true, r: 4, task_type: 'CAUSAL_LM' });
    const { model } = await loadModel(llama, { backend });
    const peft = await PeftModel.fromPretrained(model, output);
    expect(peft.loraLayers()).toHaveLength(2 * 7);
    peft.dispose();
  });

  it('fine-tunes a tiny GPT-2 with plain LoRA (--no-dora) on its Conv1D layers', async () => {
    const result = await runTextFinetune({
      model: gpt2,
      data,
      backend,
      useDora: false,
      maxSteps: 2,
      batchSize: 2,
      gradAccum: 1,
      log: () => {},
    });
    expect(result.modelType).toBe('gpt2');
    expect(result.metrics.train_steps_per_second).toBeGreaterThan(0);
    expect(result.adapterDir).toBeNull();
  });

  it('quantize: GPT-2 QLoRA on an nf4 base (Conv1D layers quantized transposed); unknown formats refused first', async () => {
    const lines: string[] = [];
    const result = await runTextFinetune({
      model: gpt2,
      data,
      backend,
      useDora: false,
      quantize: 'nf4',
      maxSteps: 2,
      batchSize: 2,
      gradAccum: 1,
      log: (l) => lines.push(l),
    });
    expect(lines.some((l) => /^quantized base: \d+ Linear layers in nf4/.test(l))).toBe(true);
    expect(result.metrics.train_loss).toBeGreaterThan(0);
    await expect(runTextFinetune({ model: gpt2, data, backend, quantize: 'int4' as 'int8', log: () => {} })).rejects.toThrow(
      "quantize must be 'nf4', 'fp4' or 'int8', got 'int4'",
    );
  });

  it('gradientCheckpointing: QDoRA (llama, nf4) and GPT-2 LoRA (dropout) train to the same losses, bit for bit', async () => {
    for (const extra of [
      { model: llama, quantize: 'nf4' as const, loraDropout: 0 },
      { model: gpt2, useDora: false, loraDropout: 0.1 },
    ]) {
      const run = async (gradientCheckpointing: boolean) => {
        const lines: string[] = [];
        const r = await runTextFinetune({
          data,
          backend,
          maxSteps: 2,
          batchSize: 2,
          gradAccum: 1,
          gradientCheckpointing,
          log: (l) => lines.push(l),
          ...extra,
        });
        return { r, lines };
      };
      const plain = await run(false);
      const ckpt = await run(true);
      expect(ckpt.lines).toContain('gradient checkpointing: each decoder layer runs again in backward');
      expect(plain.lines).not.toContain('gradient checkpointing: each decoder layer runs again in backward');
      expect(ckpt.r.metrics.train_loss).toBe(plain.r.metrics.train_loss);
      expect(ckpt.r.evalMetrics?.eval_loss).toBe(plain.r.evalMetrics?.eval_loss);
    }
  });

  it('refuses an unsupported architecture, a folder without tokenizer.json and bad data with typed errors', async () => {
    const bert = join(root, 'bert');
    await writeTinyModelFolder(bert, 'llama', backend);
    await writeFile(join(bert, 'config.json'), JSON.stringify({ model_type: 'bert', vocab_size: 40 }));
    await expect(runTextFinetune({ model: bert, data, backend, log: () => {} })).rejects.toThrow(UnsupportedModelError);
    await expect(runTextFinetune({ model: bert, data, backend, log: () => {} })).rejects.toThrow(
      /config\.json: unsupported model_type 'bert'/,
    );

    const noTokenizer = join(root, 'no-tokenizer');
    await writeTinyModelFolder(noTokenizer, 'llama', backend);
    await unlink(join(noTokenizer, 'tokenizer.json'));
    await expect(runTextFinetune({ model: noTokenizer, data, backend, log: () => {} })).rejects.toThrow(ModelFolderError);

    const bad = join(root, 'bad.jsonl');
    await writeFile(bad, '{"text": "the cat"}\nnot json\n');
    const err = await runTextFinetune({ model: llama, data: bad, backend, log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect(err).toBeInstanceOf(DoraError);
    expect((err as Error).message).toContain('bad.jsonl:2');
    await expect(runTextFinetune({ model: llama, data: join(root, 'missing.jsonl'), backend, log: () => {} })).rejects.toThrow(
      /missing\.jsonl: cannot read/,
    );
  });
});
