/**
 * DoRA caching (PEFT's `DoraCaching` helper, v0.19). While enabled, a DoRA layer in eval mode keeps the
 * per-feature scale g = m / ‖W + s·B·A‖ (and the norm) for each adapter — out_features floats per layer and
 * adapter, never PEFT's dense out×in B·A — so repeated inference skips the norm. Entries are dropped by
 * train(), an adapter switch, a merge, or any change to W, A, B or m (Parameter.version), and — as in
 * PEFT — by a forward that runs with caching off.
 */
let enabled = false;

export const DoraCaching = {
  /** Whether DoRA layers cache their scales in eval mode. */
  get enabled(): boolean {
    return enabled;
  },

  /** Turns caching on or off until changed again (PEFT's `DoraCaching()(enabled=...)`). */
  enable(flag = true): void {
    enabled = flag;
  },

  /**
   * Runs `fn` with caching set to `flag` and restores the previous setting afterwards (PEFT's
   * `with DoraCaching():`). An async `fn` keeps the setting until its promise settles.
   */
  scope<T>(fn: () => T, flag = true): T {
    const prev = enabled;
    enabled = flag;
    let result: T;
    try {
      result = fn();
    } catch (e) {
      enabled = prev;
      throw e;
    }
    if (result instanceof Promise) {
      return result.finally(() => {
        enabled = prev;
      }) as T;
    }
    enabled = prev;
    return result;
  },
};
