/**
 * Debugging overrides from the environment, the only place the WebGPU backend reads `DORA_WEBGPU_*`
 * (documented in docs/webgpu.md, "Debugging overrides"). They are read once, when a backend is created
 * (environment lookups are too slow for every dispatch; none in browsers, see `#host`), and only fill in what the backend's options
 * leave unset: programs and tests pass options (`WebGpuBackendOptions`), never variables.
 *
 *   DORA_WEBGPU_MATMUL=tiled|gemv|smallK    matmulVariant
 *   DORA_WEBGPU_WN=rows|tiles               weightNormVariant
 *   DORA_WEBGPU_FUSE=0                      fuse: false
 *   DORA_WEBGPU_TILE=8x8x8                  tuning.tile
 *   DORA_WEBGPU_SPLITK=n                    tuning.splitK
 *   DORA_WEBGPU_ROWS=n                      tuning.rows
 *   DORA_WEBGPU_WN_WORKGROUPS=n             tuning.normWorkgroups
 *   DORA_WEBGPU_DUMP_SHADERS=1              dumpShaders: every compiled program's WGSL to stderr
 */
import { hostEnv } from '#host';
import type { MatmulTuning, MatmulVariant, WeightNormVariant } from './context.js';

export interface DebugOverrides {
  readonly matmulVariant?: MatmulVariant;
  readonly weightNormVariant?: WeightNormVariant;
  readonly fuse?: boolean;
  readonly tuning: MatmulTuning;
  readonly dumpShaders?: boolean;
}

export function debugOverrides(): DebugOverrides {
  const num = (v: string | undefined) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);
  const mm = hostEnv('DORA_WEBGPU_MATMUL');
  const wn = hostEnv('DORA_WEBGPU_WN');
  const tuning: MatmulTuning = {};
  if (hostEnv('DORA_WEBGPU_TILE')) tuning.tile = hostEnv('DORA_WEBGPU_TILE');
  const splitK = num(hostEnv('DORA_WEBGPU_SPLITK'));
  if (splitK !== undefined) tuning.splitK = splitK;
  const rows = num(hostEnv('DORA_WEBGPU_ROWS'));
  if (rows !== undefined) tuning.rows = rows;
  const normWorkgroups = num(hostEnv('DORA_WEBGPU_WN_WORKGROUPS'));
  if (normWorkgroups !== undefined) tuning.normWorkgroups = normWorkgroups;
  return {
    matmulVariant: mm === 'tiled' || mm === 'gemv' || mm === 'smallK' ? mm : undefined,
    weightNormVariant: wn === 'rows' || wn === 'tiles' ? wn : undefined,
    fuse: hostEnv('DORA_WEBGPU_FUSE') === '0' ? false : undefined,
    tuning,
    dumpShaders: hostEnv('DORA_WEBGPU_DUMP_SHADERS') ? true : undefined,
  };
}
