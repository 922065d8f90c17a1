import type { Backend } from '../backend/backend.js';
import type { DType } from '../dtype.js';

/**
 * One backend buffer shared by every tensor that views it (reshape, saved-for-backward copies).
 * Reference counted so the buffer is released exactly once, when its last user lets go.
 */
export class Storage {
  private refs = 1;

  constructor(
    readonly backend: Backend,
    readonly data: unknown,
    readonly dtype: DType,
    readonly size: number,
  ) {}

  get released(): boolean {
    return this.refs <= 0;
  }

  /** True while more than one tensor views this buffer (an in-place write would change them all). */
  get shared(): boolean {
    return this.refs > 1;
  }

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.backend.release(this.data);
  }
}
