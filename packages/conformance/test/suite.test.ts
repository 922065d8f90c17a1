import { describe, expect, it } from 'vitest';
import { checkIds } from '../src/define.js';
import { kernelTiers } from '../src/tiers/index.js';

describe('the suite definition', () => {
  it('has unique, namespaced case ids', () => {
    const ids = kernelTiers.flatMap((t) => t.cases.map((c) => c.id));
    expect(new Set(ids).size).toBe(ids.length);
    for (const t of kernelTiers) for (const c of t.cases) expect(c.id.startsWith(`${t.id}/`), c.id).toBe(true);
    expect(ids.length).toBeGreaterThan(250);
  });

  it('rejects skips of unknown ids and skips without a reason', () => {
    expect(() => checkIds(kernelTiers, { 'primitive/matmul.hand': 'ok' })).not.toThrow();
    expect(() => checkIds(kernelTiers, { 'primitive/matmul.typo': 'x' })).toThrow(/unknown case ids: primitive\/matmul.typo/);
    expect(() => checkIds(kernelTiers, { 'primitive/matmul.hand': ' ' })).toThrow(/needs a reason/);
  });

  it('rejects duplicate ids across added tiers', () => {
    const extra = { id: 'extra', title: 'x', cases: [kernelTiers[0]!.cases[0]!] };
    expect(() => checkIds([...kernelTiers, extra], {})).toThrow(/appears twice/);
  });
});
