import type { Tensor } from './tensor.js';

/**
 * Memory scopes (like tf.tidy): every tensor created inside `tidy(fn)` is disposed when fn returns,
 * except those it returns (moved to the enclosing scope) and those passed to `keep`.
 *
 * Every composite op (one built from other ops, in `ops/` and `dora/`) runs its body in `tidy`, so its
 * intermediates are freed when it returns; the autograd graph keeps what backward needs.
 */
interface Scope {
  readonly tracked: Tensor[];
  readonly kept: Set<Tensor>;
}

const scopes: Scope[] = [];

/** @internal called by the Tensor constructor. */
export function track(t: Tensor): void {
  scopes[scopes.length - 1]?.tracked.push(t);
}

/** Exempts `t` from disposal by the enclosing `tidy`. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.kept.add(t);
  return t;
}

function collect(value: unknown, into: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ((value as { storage?: unknown }).storage !== undefined && 'shape' in (value as object)) {
    into.add(value as Tensor);
    return;
  }
  if (value instanceof Map) for (const v of value.values()) collect(v, into, seen);
  else if (Array.isArray(value)) for (const v of value) collect(v, into, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, into, seen);
}

/** Runs a synchronous function and frees the tensors it created but does not return. */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tracked: [], kept: new Set() };
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope.tracked) if (!scope.kept.has(t)) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new TypeError('tidy() takes a synchronous function; await outside of it');
  }
  const returned = new Set<Tensor>();
  collect(result, returned);
  const parent = scopes[scopes.length - 1];
  for (const t of scope.tracked) {
    if (returned.has(t) || scope.kept.has(t)) parent?.tracked.push(t);
    else t.dispose();
  }
  return result;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** @internal Runs fn with autograd recording on (checkpoint's recompute runs inside backward's noGrad). */
export function withGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}
