/** Metric names and rounding as transformers' Trainer prints them (`speed_metrics`). */

export interface SpeedMetrics {
  readonly runtime: number;
  readonly samplesPerSecond: number;
  readonly stepsPerSecond: number;
}

/** `{prefix}_runtime`, `{prefix}_samples_per_second`, `{prefix}_steps_per_second`, rounded as transformers does. */
export function speedMetrics(prefix: 'train' | 'eval', seconds: number, samples: number, steps: number): Record<string, number> {
  const safe = Math.max(seconds, 1e-9);
  return {
    [`${prefix}_runtime`]: round(seconds, 4),
    [`${prefix}_samples_per_second`]: round(samples / safe, 3),
    [`${prefix}_steps_per_second`]: round(steps / safe, 3),
  };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** One line per metric, aligned, like transformers' `log_metrics`. */
export function formatMetrics(split: string, metrics: Readonly<Record<string, number>>): string {
  const keys = Object.keys(metrics).sort();
  const width = Math.max(0, ...keys.map((k) => k.length));
  return [`***** ${split} metrics *****`, ...keys.map((k) => `  ${k.padEnd(width)} = ${metrics[k]}`)].join('\n');
}
