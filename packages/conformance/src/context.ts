/**
 * The CaseContext implementation: tracks every handle a case creates, so the runner can release them
 * and then check that the backend's live-buffer count is back where it started.
 */
import type { AnyTypedArray, Backend, DType, TensorInfo } from '@dorajs/core';
import { assertClose, assertEqual, type CloseOptions, type Tolerance } from './compare.js';
import { SeededRandom } from './prng.js';
import type { CaseContext, ExpectOptions, HostValues } from './types.js';

/** Thrown by `ctx.skip`; the runner turns it into a skipped test. */
export class CaseSkipped extends Error {
  override name = 'CaseSkipped';
  constructor(readonly reason: string) {
    super(reason);
  }
}

export class RunContext implements CaseContext {
  private readonly owned: { backend: Backend; handle: unknown }[] = [];
  /** Live-buffer counts of each backend this case touched, taken before it touched it. */
  readonly liveBefore = new Map<Backend, number>();

  constructor(
    readonly backend: Backend,
    private readonly getReference: () => Promise<Backend>,
    readonly tolerance: Tolerance,
  ) {
    this.liveBefore.set(backend, backend.liveBuffers());
  }

  async reference(): Promise<Backend> {
    const ref = await this.getReference();
    if (!this.liveBefore.has(ref)) this.liveBefore.set(ref, ref.liveBuffers());
    return ref;
  }

  random(seed: number): SeededRandom {
    return new SeededRandom(seed);
  }

  supports(dtype: DType): boolean {
    return this.backend.capabilities.dtypes.includes(dtype);
  }

  tensor(values: HostValues, shape: readonly number[], dtype: DType = 'float32', on: Backend = this.backend): TensorInfo {
    const array = toTypedArray(values, dtype);
    return this.own(on.upload(array as never, shape, dtype), shape, dtype, on);
  }

  own(handle: unknown, shape: readonly number[], dtype: DType, on: Backend = this.backend): TensorInfo {
    this.owned.push({ backend: on, handle });
    return { data: handle, shape, dtype };
  }

  read(t: TensorInfo, on: Backend = this.backend): Promise<AnyTypedArray> {
    return on.download(t);
  }

  closeOptions(options: ExpectOptions = {}): CloseOptions {
    const k = options.looseness ?? 1;
    return {
      tolerance: { rtol: this.tolerance.rtol * k, atol: this.tolerance.atol * k },
      ...(options.metric ? { metric: options.metric } : {}),
      ...(options.magnitude ? { magnitude: options.magnitude } : {}),
    };
  }

  async expectClose(
    what: string,
    t: TensorInfo,
    expected: ArrayLike<number>,
    options: ExpectOptions = {},
    on: Backend = this.backend,
  ): Promise<void> {
    const actual = await this.read(t, on);
    // The output is float32: what float64 math expects is its float32 rounding (exp(100) is +Inf there).
    assertClose(what, actual, Float32Array.from(expected), this.closeOptions(options));
  }

  async expectEqual(what: string, t: TensorInfo, expected: ArrayLike<number>, on: Backend = this.backend): Promise<void> {
    assertEqual(what, await this.read(t, on), expected);
  }

  skip(reason: string): never {
    throw new CaseSkipped(reason);
  }

  /** Releases everything the case created, newest first. */
  releaseAll(): void {
    for (const { backend, handle } of this.owned.splice(0).reverse()) backend.release(handle);
  }
}

export function toTypedArray(values: HostValues, dtype: DType): AnyTypedArray {
  switch (dtype) {
    case 'float32':
      return values instanceof Float32Array ? values : Float32Array.from(values);
    case 'int32':
      return values instanceof Int32Array ? values : Int32Array.from(values);
    case 'bfloat16':
    case 'float16':
      return values instanceof Uint16Array ? values : Uint16Array.from(values);
    case 'int8':
      return values instanceof Int8Array ? values : Int8Array.from(values);
    case 'uint8':
      return values instanceof Uint8Array ? values : Uint8Array.from(values);
  }
}
