/**
 * defineBackendConformance: called once from a backend's `test/conformance.test.ts`, it registers one
 * vitest suite per tier and one test per case. Each case runs on a freshly created context; everything
 * it allocates is released afterwards and the backend's live-buffer count must be back where it was.
 */
import type { Backend } from '@dorajs/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Tolerance } from './compare.js';
import { CaseSkipped, RunContext } from './context.js';
import { kernelTiers, referenceTier } from './tiers/index.js';
import { modelTiers } from './tiers/models.js';
import type { ConformanceCase, ConformanceTier } from './types.js';

export interface BackendConformanceOptions {
  /** Shown in the suite title, e.g. 'webgpu'. */
  readonly name: string;
  /** Creates the backend under test (called once, before the first case). */
  readonly create: () => Backend | Promise<Backend>;
  /**
   * Creates the reference backend for the vs-reference tier (called once, on first use), normally
   * `() => createCpuBackend({ kernels: 'js' })` from @dorajs/backend-cpu. Required rather than imported
   * here, so this package does not depend on a backend. `null` for the reference kernels themselves: the
   * vs-reference tier is then left out (it would compare the kernels with themselves, a check that cannot
   * fail); their values are checked against float64 host values by the other tiers.
   */
  readonly reference: (() => Backend | Promise<Backend>) | null;
  /**
   * rtol/atol for every comparison. Default: 1e-5 / 1e-6 for host backends, 1e-4 / 1e-5 for backends
   * whose `capabilities.offHost` is true (GPUs sum in other orders and use fast transcendental functions).
   */
  readonly tolerance?: Partial<Tolerance>;
  /** Case id → reason. Those cases show as skipped with the reason in their title. Unknown ids are an error. */
  readonly skip?: Readonly<Record<string, string>>;
  /** More tiers to run after the built-in ones (their case ids share the namespace). */
  readonly tiers?: readonly ConformanceTier[];
  /**
   * Folder of the PEFT 0.21.0 golden fixtures for the parity tier (default: this repository's
   * fixtures/peft). A missing fixture fails its case, naming the path.
   */
  readonly fixturesDir?: string;
}

export const HOST_TOLERANCE: Tolerance = { rtol: 1e-5, atol: 1e-6 };
export const OFF_HOST_TOLERANCE: Tolerance = { rtol: 1e-4, atol: 1e-5 };

export function defineBackendConformance(options: BackendConformanceOptions): void {
  const kernels = options.reference ? kernelTiers : kernelTiers.filter((t) => t !== referenceTier);
  const tiers = [...kernels, ...modelTiers(options.fixturesDir), ...(options.tiers ?? [])];
  const skip = options.skip ?? {};
  checkIds(tiers, skip);

  describe(`backend conformance: ${options.name}`, () => {
    let backend: Backend | null = null;
    let reference: Promise<Backend> | null = null;
    let tolerance: Tolerance = HOST_TOLERANCE;

    beforeAll(async () => {
      backend = await options.create();
      const base = backend.capabilities.offHost ? OFF_HOST_TOLERANCE : HOST_TOLERANCE;
      tolerance = { ...base, ...options.tolerance };
    });

    afterAll(async () => {
      const ref = reference ? await reference.catch(() => null) : null;
      if (ref && ref !== backend) ref.dispose();
      backend?.dispose();
    });

    const makeReference = options.reference;
    const getReference = (): Promise<Backend> => {
      if (!makeReference) throw new Error(`backend '${options.name}' is the reference: no case may ask for another one`);
      return (reference ??= Promise.resolve(makeReference()));
    };

    for (const tier of tiers) {
      describe(`${tier.id}: ${tier.title}`, () => {
        for (const kase of tier.cases) {
          const reason = skip[kase.id];
          if (reason !== undefined) {
            it.skip(`${kase.id} — skipped: ${reason}`, () => {});
            continue;
          }
          it(`${kase.id} — ${kase.title}`, async (test) => {
            if (!backend) throw new Error(`backend '${options.name}' was not created (see the beforeAll error)`);
            const outcome = await runConformanceCase(kase, { backend, reference: getReference, tolerance });
            if (outcome.skipped !== undefined) test.skip(outcome.skipped);
          });
        }
      });
    }
  });
}

export interface CaseRunOptions {
  readonly backend: Backend;
  readonly reference: () => Promise<Backend>;
  readonly tolerance: Tolerance;
}

/**
 * Runs one case outside vitest's registration (for debugging a single case, or for testing the suite
 * itself). Resolves with `{}` when it passes and `{ skipped: reason }` when it skips; rejects when it
 * fails. Afterwards every handle the case created is released and the live-buffer counts are checked.
 */
export async function runConformanceCase(kase: ConformanceCase, options: CaseRunOptions): Promise<{ skipped?: string }> {
  const ctx = new RunContext(options.backend, options.reference, options.tolerance);
  try {
    await kase.run(ctx);
  } catch (e) {
    ctx.releaseAll();
    if (e instanceof CaseSkipped) return { skipped: e.reason };
    throw e;
  }
  ctx.releaseAll();
  for (const [b, before] of ctx.liveBefore) {
    const now = b.liveBuffers();
    if (now !== before) {
      throw new Error(
        `${kase.id}: backend '${b.name}' has ${now} live buffers after the case released everything it created, ${before} before (a kernel leaks or counts wrong)`,
      );
    }
  }
  return {};
}

/** Throws when case ids repeat, or `skip` names an unknown id or gives no reason. */
export function checkIds(tiers: readonly ConformanceTier[], skip: Readonly<Record<string, string>>): void {
  const ids = new Set<string>();
  for (const tier of tiers) {
    for (const kase of tier.cases) {
      if (ids.has(kase.id)) throw new Error(`conformance: case id '${kase.id}' appears twice (tier '${tier.id}')`);
      ids.add(kase.id);
    }
  }
  const unknown = Object.keys(skip).filter((id) => !ids.has(id));
  if (unknown.length)
    throw new Error(`conformance: skip names unknown case ids: ${unknown.join(', ')} (ids look like 'primitive/matmul.odd.nt')`);
  for (const [id, reason] of Object.entries(skip)) {
    if (!reason.trim()) throw new Error(`conformance: skipping '${id}' needs a reason`);
  }
}
