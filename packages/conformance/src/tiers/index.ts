import type { ConformanceTier } from '../types.js';
import { fusedTier } from './fused.js';
import { narrowTier } from './narrow.js';
import { primitiveTier } from './primitives.js';
import { referenceTier } from './reference.js';

/** The kernel tiers every backend runs, in order. */
export const kernelTiers: readonly ConformanceTier[] = [primitiveTier, referenceTier, fusedTier, narrowTier];

export { fusedTier, narrowTier, primitiveTier, referenceTier };
