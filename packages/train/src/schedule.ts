/**
 * Learning-rate schedules as multipliers of the base rate, so the schedule is a pure function of the step
 * and resuming needs no scheduler state.
 */
import { ConfigError } from '@dorajs/core';

export type LrSchedule = (step: number) => number;

/**
 * transformers' get_linear_schedule_with_warmup: 0 → 1 linearly over `warmupSteps`, then 1 → 0 linearly
 * until `totalSteps`. `step` is the number of optimizer steps already taken (the first update uses step 0).
 */
export function linearWarmupDecay(warmupSteps: number, totalSteps: number): LrSchedule {
  if (!(warmupSteps >= 0) || !(totalSteps > 0)) {
    throw new ConfigError(`linear schedule: warmupSteps ${warmupSteps} must be ≥ 0 and totalSteps ${totalSteps} > 0`);
  }
  return (step) => {
    if (step < warmupSteps) return step / Math.max(1, warmupSteps);
    return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  };
}

export const constantSchedule: LrSchedule = () => 1;
