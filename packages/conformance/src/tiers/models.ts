/**
 * The tiers that run core's autograd, DoRA math and PEFT parity on the backend under test (as opposed to
 * its kernels alone). `defineBackendConformance` appends them after the kernel tiers.
 */
import type { ConformanceTier } from '../types.js';
import { autogradTier } from './autograd.js';
import { doraInvariantsTier } from './dora-invariants.js';
import { DEFAULT_FIXTURES_DIR, peftParityTier } from './peft-parity.js';

export function modelTiers(fixturesDir: string = DEFAULT_FIXTURES_DIR): ConformanceTier[] {
  return [autogradTier, doraInvariantsTier, peftParityTier(fixturesDir)];
}

export { autogradTier, doraInvariantsTier, peftParityTier, DEFAULT_FIXTURES_DIR };
