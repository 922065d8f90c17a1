/**
 * What a remembered value was computed from, to tell later whether it still holds: objects by identity and,
 * when they have one, their `version` (bumped by every in-place change), plus numbers and strings by value.
 * Shared by the checkpoint recompute memo and DoRA's norm memo.
 */
export interface DepsKey {
  readonly deps: readonly unknown[];
  readonly versions: readonly (number | undefined)[];
}

const versionOf = (d: unknown): number | undefined =>
  d !== null && typeof d === 'object' && typeof (d as { version?: unknown }).version === 'number'
    ? (d as { version: number }).version
    : undefined;

const isDisposed = (d: unknown): boolean => d !== null && typeof d === 'object' && (d as { isDisposed?: unknown }).isDisposed === true;

/** The key of `deps` as they are now. */
export const depsKey = (deps: readonly unknown[]): DepsKey => ({ deps: [...deps], versions: deps.map(versionOf) });

/** Whether `deps` are the key's objects, none disposed, each at the version it had when the key was taken. */
export const sameDeps = (key: DepsKey, deps: readonly unknown[]): boolean =>
  key.deps.length === deps.length && deps.every((d, i) => d === key.deps[i] && versionOf(d) === key.versions[i] && !isDisposed(d));
