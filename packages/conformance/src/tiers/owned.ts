/**
 * Core tensors made by a conformance case must all be freed before the case ends: the runner checks the
 * backend's live-buffer count. `Owned` collects them (and modules) and frees them in one place.
 */
import type { Module, Tensor } from '@dorajs/core';

export class Owned {
  private readonly items: { dispose(): void }[] = [];

  /** Registers a tensor (or module) for disposal and returns it. */
  add<T extends Tensor | Module>(item: T): T {
    this.items.push(item);
    return item;
  }

  disposeAll(): void {
    for (const item of this.items.reverse()) item.dispose();
    this.items.length = 0;
  }
}

/** Runs `body` with an Owned list that is emptied afterwards, even when body throws. */
export async function withOwned<T>(body: (own: Owned) => Promise<T>): Promise<T> {
  const own = new Owned();
  try {
    return await body(own);
  } finally {
    own.disposeAll();
  }
}
