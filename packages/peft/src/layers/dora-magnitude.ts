/**
 * One adapter's DoRA magnitude, as PEFT's `DoraLinearLayer`: a module whose single parameter is `weight`,
 * so the in-memory key is `…lora_magnitude_vector.<adapter>.weight` (the file drops `.weight`). It also
 * holds that adapter's DoRA cache, which is private state, never part of the state dict.
 */
import { keep, Module, NormMemo, type Parameter, type Tensor } from '@dorajs/core';

/** What a cache entry depends on: a Parameter, or a packed base weight (never changed in place, version 0). */
export interface CacheSource {
  readonly version: number;
  readonly isDisposed: boolean;
}

interface CacheEntry {
  /** Parameters the cached values were computed from, and their versions at the time. */
  readonly sources: readonly CacheSource[];
  readonly versions: readonly number[];
  readonly scale: number;
  /** ‖W + s·B·A‖ [out] and g = m / norm [out]. */
  readonly norm: Tensor;
  readonly g: Tensor;
}

export class DoraMagnitude extends Module {
  static override readonly typeName: string = 'DoraMagnitude';
  weight: Parameter;
  private _cache: CacheEntry | null = null;
  /**
   * The detached norm of this adapter's last training forward, reused by the next one while W, A, B and
   * the scale are unchanged (the micro-batches of a gradient-accumulation step): one [out] vector.
   */
  readonly normMemo = new NormMemo();

  constructor(weight: Parameter) {
    super();
    this.weight = weight;
  }

  /** The cached entry when it was computed from exactly these parameter versions and scale. */
  cached(sources: readonly CacheSource[], scale: number): { norm: Tensor; g: Tensor } | null {
    const c = this._cache;
    if (!c || c.scale !== scale || c.sources.length !== sources.length) return null;
    for (let i = 0; i < sources.length; i++) {
      if (c.sources[i] !== sources[i] || c.versions[i] !== sources[i]!.version || sources[i]!.isDisposed) return null;
    }
    return { norm: c.norm, g: c.g };
  }

  store(sources: readonly CacheSource[], scale: number, norm: Tensor, g: Tensor): void {
    this.clearCache();
    this._cache = { sources: [...sources], versions: sources.map((p) => p.version), scale, norm: keep(norm), g: keep(g) };
  }

  get hasCache(): boolean {
    return this._cache !== null;
  }

  /** Floats the cache holds: 2·out (norm and g) when filled, never an out×in matrix. */
  get cachedElements(): number {
    return this._cache ? this._cache.norm.size + this._cache.g.size : 0;
  }

  clearCache(): void {
    if (!this._cache) return;
    this._cache.norm.dispose();
    this._cache.g.dispose();
    this._cache = null;
  }

  protected override onTrainModeChange(mode: boolean): void {
    if (mode) this.clearCache();
    else this.normMemo.clear();
  }

  protected override releaseState(): void {
    this.clearCache();
    this.normMemo.clear();
  }
}
