/** Blockings and work splits of the matmul programs: defaults by shape, and the ones `setTuning` forces. */
import type { KernelContext } from '../../context.js';
import { type TileBlocking, type TileConfig, tileLoadsEvenly, tiledStorageBytes } from './tiled.js';

/** 128×128 tiles (64×128 with 8 rows of threads), 8×8 per thread: the most arithmetic per workgroup-memory read. */
const LARGE_TILE: TileBlocking = { TM: 8, TN: 8, BK: 8 };
export const SMALL_TILE: TileBlocking = { TM: 4, TN: 4, BK: 16 };
/** Workgroups a matmul should keep in flight before K is split across workgroups (a large GPU, a few waves). */
const SPLIT_K_TARGET = 264;
const MAX_SPLITS = 16;

/**
 * Rows per workgroup of the row-streaming GEMV: 4 (fastest of 4, 8, 16 at 4096×4096 on the H200), fewer
 * when N is small so that there are still ~256 workgroups (x·Aᵀ has N = r rows).
 */
export function gemvRowsPerWorkgroup(N: number): number {
  return Math.min(4, Math.max(1, 2 ** Math.floor(Math.log2(Math.max(1, N / 256)))));
}

const parsedTiles = new Map<string, TileBlocking | undefined>();

/**
 * A `TMxTNxBK` blocking (e.g. 8x8x8; TM, TN ∈ {4, 8}), from the `tuning` option or `setTuning`; whether
 * it suits the device's rows of threads is checked by `chooseTile`.
 */
export function parseTile(spec: string | undefined): TileBlocking | undefined {
  if (!spec) return undefined;
  if (parsedTiles.has(spec)) return parsedTiles.get(spec);
  const m = /^(4|8)x(4|8)x(4|8|16|32)$/.exec(spec);
  const cfg = m ? { TM: Number(m[1]), TN: Number(m[2]), BK: Number(m[3]) } : undefined;
  parsedTiles.set(spec, cfg);
  return cfg;
}

/**
 * Rows of 16 threads a workgroup of the 2-D programs (tiled matmul, `tiles` weight norm) may have: 16
 * (256 invocations) where the device allows it, else the largest power of two that fits
 * `maxComputeInvocationsPerWorkgroup` and `maxComputeWorkgroupSizeY` (8 on a compatibility-mode device
 * with default limits: 128 invocations); 0 below 16 invocations (no WebGPU device).
 */
export function threadRows(
  limits: Pick<GPUSupportedLimits, 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupSizeY'>,
): number {
  if (limits.maxComputeWorkgroupSizeX < 16) return 0;
  const most = Math.min(16, Math.floor(limits.maxComputeInvocationsPerWorkgroup / 16), limits.maxComputeWorkgroupSizeY);
  return most >= 1 ? 2 ** Math.floor(Math.log2(most)) : 0;
}

/** K slices forced by the `tuning` option or `setTuning` (1: none). */
function forcedSplits(ctx: KernelContext): number | undefined {
  const n = ctx.options.tuning.splitK;
  return n !== undefined && Number.isInteger(n) && n >= 1 ? n : undefined;
}

/** Rows per workgroup of the row-streaming programs forced by the `tuning` option or `setTuning`. */
export function forcedRows(ctx: KernelContext): number | undefined {
  const n = ctx.options.tuning.rows;
  return n !== undefined && [1, 2, 4, 8, 16].includes(n) ? n : undefined;
}

/**
 * The tiled program's blocking: forced (`tuning.tile`), else by shape, on as many rows of threads as the
 * device allows (`threadRows`), shrunk (BK 8, then the small tile, then fewer rows of threads) until it
 * fits the device's workgroup memory; null when nothing fits (the caller then takes another program).
 */
export function chooseTile(ctx: KernelContext, M: number, N: number, transA: boolean, transB: boolean): TileConfig | null {
  const byShape = M >= 512 && N >= 512 ? LARGE_TILE : SMALL_TILE;
  const forced = parseTile(ctx.options.tuning.tile);
  const blockings = [...(forced ? [forced, { ...forced, BK: 8 }] : []), byShape, { ...byShape, BK: 8 }, SMALL_TILE];
  for (let TY = threadRows(ctx.rt.limits); TY >= 1; TY /= 2) {
    for (const blocking of blockings) {
      const cfg = { ...blocking, TY };
      if (tileLoadsEvenly(cfg) && tiledStorageBytes(cfg, transA, transB) <= ctx.maxWorkgroupStorage) return cfg;
    }
  }
  return null;
}

/** K slices (and the K range of each, a multiple of BK) for a tiled matmul of `tiles` output tiles. */
export function chooseSplits(
  ctx: KernelContext,
  tiles: number,
  K: number,
  BK: number,
  batch: number,
): { readonly splits: number; readonly kChunk: number } {
  // Few output tiles (short M, e.g. a prompt of 64 tokens) leave most of a large GPU idle: split K instead.
  let splits =
    forcedSplits(ctx) ??
    (tiles < SPLIT_K_TARGET && K >= 1024 ? Math.min(MAX_SPLITS, Math.ceil(SPLIT_K_TARGET / tiles), Math.floor(K / 256)) : 1);
  const kChunk = Math.ceil(K / Math.max(1, splits) / BK) * BK;
  splits = Math.max(1, Math.ceil(K / kChunk));
  if (batch * splits > ctx.rt.limits.maxComputeWorkgroupsPerDimension) splits = 1;
  return { splits, kChunk };
}
