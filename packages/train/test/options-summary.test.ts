import { ConfigError } from '@dorajs/core';
import { describe, expect, it } from 'vitest';
import {
  formatMetrics,
  formatMetricsDict,
  formatSummary,
  MNIST_FINETUNE_DEFAULTS,
  parseTargetModules,
  resolveHyperParameters,
  speedMetrics,
} from '../src/index.js';

describe('fine-tuning options', () => {
  it('split comma lists, keep all-linear, fall back to the job default', () => {
    expect(parseTargetModules('q_proj, v_proj,', [])).toEqual(['q_proj', 'v_proj']);
    expect(parseTargetModules('all-linear', [])).toBe('all-linear');
    expect(parseTargetModules(undefined, ['fc1'])).toEqual(['fc1']);
    expect(() => parseTargetModules(' , ', [])).toThrow(ConfigError);
  });

  it('reject hyper-parameters that cannot train, naming them', () => {
    expect(resolveHyperParameters({}, MNIST_FINETUNE_DEFAULTS)).toMatchObject({ useDora: true, maxSteps: 500, loraR: 8 });
    expect(() => resolveHyperParameters({ batchSize: 0 }, MNIST_FINETUNE_DEFAULTS)).toThrow(/batchSize/);
    expect(() => resolveHyperParameters({ loraDropout: 1 }, MNIST_FINETUNE_DEFAULTS)).toThrow(/loraDropout/);
    expect(() => resolveHyperParameters({ lr: Number.NaN }, MNIST_FINETUNE_DEFAULTS)).toThrow(/lr/);
    expect(() => resolveHyperParameters({ maxSteps: 2.5 }, MNIST_FINETUNE_DEFAULTS)).toThrow(/maxSteps/);
  });
});

describe('metrics formatting', () => {
  it('names and rounds speed metrics as transformers does', () => {
    expect(speedMetrics('train', 2, 64, 4)).toEqual({ train_runtime: 2, train_samples_per_second: 32, train_steps_per_second: 2 });
    expect(formatMetrics('train', { train_loss: 0.5, epoch: 1 })).toBe('***** train metrics *****\n  epoch      = 1\n  train_loss = 0.5');
    expect(formatMetricsDict({ epoch: 2, train_loss: 0.25, train_runtime: 1.5 })).toBe(
      "{'train_runtime': 1.5, 'train_loss': 0.25, 'epoch': 2.0}",
    );
  });

  it('summarises a job with the metrics dict and what it achieved', () => {
    const metrics = { train_runtime: 3, train_samples_per_second: 100, train_steps_per_second: 3, train_loss: 0.4, epoch: 1 };
    const run = { accuracy: 0.9, mergedAccuracy: 0.9, mergedAgreement: 1, knownDigitsAccuracy: 0, metrics, trainableParameters: 10 };
    const text = formatSummary({
      backend: 'cpu',
      before: { accuracy: 0, knownDigitsAccuracy: 0.97 },
      runs: [
        { ...run, method: 'dora' },
        { ...run, method: 'lora', accuracy: 0.95, metrics: { ...metrics, train_samples_per_second: 200 } },
      ],
      adapterDir: '/tmp/a',
    });
    expect(text.split('\n')).toEqual([
      "{'train_runtime': 3.0, 'train_samples_per_second': 100.0, 'train_steps_per_second': 3.0, 'train_loss': 0.4, 'epoch': 1.0}",
      'DoRA: held-out accuracy on digits 5-9 0.00% -> 90.00% (merged: 90.00%)',
      'LoRA for comparison: 95.00%; DoRA/LoRA samples/s 0.500x',
      'adapter saved to /tmp/a',
    ]);
  });
});
