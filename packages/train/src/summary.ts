/**
 * The closing lines of a fine-tuning job, as transformers' Trainer ends a run: the metrics dict it prints
 * (`{'train_runtime': …, 'train_samples_per_second': …, 'train_steps_per_second': …, 'train_loss': …,
 * 'epoch': …}`), then what the job achieved.
 */
import type { MnistFinetuneResult } from './mnist/finetune.js';
import { round } from './metrics.js';
import type { TextFinetuneResult } from './text/finetune.js';

/** transformers' printed form of a metrics dict (Python repr of a dict of floats). */
export function formatMetricsDict(metrics: Readonly<Record<string, number>>): string {
  const order = ['train_runtime', 'train_samples_per_second', 'train_steps_per_second', 'train_loss', 'epoch'];
  const keys = [...order.filter((k) => k in metrics), ...Object.keys(metrics).filter((k) => !order.includes(k))];
  return `{${keys.map((k) => `'${k}': ${pyFloat(metrics[k]!)}`).join(', ')}}`;
}

function pyFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  return Number.isInteger(x) ? `${x}.0` : String(round(x, 6));
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

function isMnist(r: MnistFinetuneResult | TextFinetuneResult): r is MnistFinetuneResult {
  return 'runs' in r;
}

export function formatSummary(result: MnistFinetuneResult | TextFinetuneResult): string {
  if (isMnist(result)) {
    const main = result.runs[0]!;
    const name = main.method === 'dora' ? 'DoRA' : 'LoRA';
    const lines = [
      formatMetricsDict(main.metrics),
      `${name}: held-out accuracy on digits 5-9 ${pct(result.before.accuracy)} -> ${pct(main.accuracy)} (merged: ${pct(main.mergedAccuracy)})`,
    ];
    const other = result.runs[1];
    if (other) {
      lines.push(
        `${other.method === 'dora' ? 'DoRA' : 'LoRA'} for comparison: ${pct(other.accuracy)}; ${name}/${other.method === 'dora' ? 'DoRA' : 'LoRA'} samples/s ${(main.metrics.train_samples_per_second! / other.metrics.train_samples_per_second!).toFixed(3)}x`,
      );
    }
    if (result.adapterDir) lines.push(`adapter saved to ${result.adapterDir}`);
    return lines.join('\n');
  }
  const lines = [formatMetricsDict(result.metrics)];
  if (result.evalMetrics && result.evalLossBefore !== null)
    lines.push(`eval_loss ${result.evalLossBefore.toFixed(4)} -> ${result.evalMetrics.eval_loss!.toFixed(4)}`);
  if (result.adapterDir) lines.push(`adapter saved to ${result.adapterDir}`);
  return lines.join('\n');
}
