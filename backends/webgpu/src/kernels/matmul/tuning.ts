/** Blockings and work splits of the matmul programs: defaults by shape, and the ones `setTuning` forces. */
import type { KernelContext } from '../../context.js';
import { type TileConfig, tiledStorageBytes } from './tiled.js';

/** 128×128 tiles, 8×8 per thread: the most arithmetic per workgroup-memory read. */
const LARGE_TILE: TileConfig = { TM: 8, TN: 8, BK: 8 };
export const SMALL_TILE: TileConfig = { TM: 4, TN: 4, BK: 16 };
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

const parsedTiles = new Map<string, TileConfig | undefined>();

/** A `TMxTNxBK` blocking (e.g. 8x8x8; TM, TN ∈ {4, 8}), from the `tuning` option or `setTuning`. */
export function parseTile(spec: string | undefined): TileConfig | undefined {
  if (!spec) return undefined;
  if (parsedTiles.has(spec)) return parsedTiles.get(spec);
  const m = /^(4|8)x(4|8)x(4|8|16|32)$/.exec(spec);
  let cfg: TileConfig | undefined;
  if (m) {
    cfg = { TM: Number(m[1]), TN: Number(m[2]), BK: Number(m[3]) };
    // Every thread must load at least one vec4 of each operand tile.
    if (16 * cfg.TM * cfg.BK < 1024 || 16 * cfg.TN * cfg.BK < 1024) cfg = undefined;
  }
  parsedTiles.set(spec, cfg);
  return cfg;
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

/** The tiled program's blocking: forced, else by shape, shrunk to the device's workgroup memory. */
export function chooseTile(ctx: KernelContext, M: number, N: number, transA: boolean, transB: boolean): TileConfig {
  let cfg = parseTile(ctx.options.tuning.tile) ?? (M >= 512 && N >= 512 ? LARGE_TILE : SMALL_TILE);
  if (tiledStorageBytes(cfg, transA, transB) > ctx.maxWorkgroupStorage) cfg = { ...cfg, BK: 8 };
  if (tiledStorageBytes(cfg, transA, transB) > ctx.maxWorkgroupStorage) cfg = SMALL_TILE;
  return cfg;
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
