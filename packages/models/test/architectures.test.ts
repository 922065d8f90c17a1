/**
 * Every architecture on the CPU against fixtures/models (float64 reference, see its README), within 1e-5:
 * forward logits, a teacher-forced 20-step decode through the KV cache with identical greedy tokens, and
 * a DoRA adapter on every linear layer, unmerged and merged.
 */
import { describe, expect, it } from 'vitest';
import {
  ARCHITECTURE_CASES,
  expectDecodeMatches,
  expectDoraMatches,
  expectForwardMatches,
  expectGenerateMatches,
  GENERATE_CASES,
  openFixture,
} from './architecture-fixtures.js';
import { cpu } from './helpers.js';

describe.each(ARCHITECTURE_CASES)('%s on the CPU', (name, typeName) => {
  it('forward logits, and a teacher-forced 20-step decode with identical greedy tokens', async () => {
    const f = await openFixture(name, cpu(), 1e-5);
    expect(f.model.typeName).toBe(typeName);
    await expectForwardMatches(f, 'out.base');
    await expectDecodeMatches(f, 'base', true);
    f.ids.dispose();
    f.model.dispose();
    expect(f.backend.liveBuffers()).toBe(0);
  });

  it('a DoRA adapter on every linear layer: unmerged logits and decode, then merged logits', async () => {
    const f = await openFixture(name, cpu(), 1e-5);
    await expectDoraMatches(f, true);
    expect(f.backend.liveBuffers()).toBe(0);
  });
});

describe.each(GENERATE_CASES)('%s: generate() on the CPU', (name) => {
  it('a left-padded batch, free-running greedy past the LongRoPE switch, gives the reference tokens (base and DoRA)', async () => {
    const f = await openFixture(name, cpu(), 1e-5);
    await expectGenerateMatches(f);
    expect(f.backend.liveBuffers()).toBe(0);
  });
});
