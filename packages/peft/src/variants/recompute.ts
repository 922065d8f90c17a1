import type { AdapterSettings, VariantHost } from './variant.js';

/**
 * PEFT's choice between its two forward forms: in training with dropout the adapter sees the dropped input
 * and cannot reuse the base result (embeddings never drop out); otherwise the base output is reused.
 */
export function recomputes(host: VariantHost, s: AdapterSettings): boolean {
  return host.training && s.dropout > 0 && host.geometry.kind !== 'embedding';
}
