/**
 * @dorajs/backend-conformance: the suite every dorajs backend runs from one `test/conformance.test.ts`:
 *
 *   defineBackendConformance({ name: 'mybackend', create: () => createMyBackend(), reference: () => createCpuBackend() });
 *
 * Kernel tiers: primitive kernels vs float64 host values, every kernel vs the reference backend on seeded
 * inputs, fused kernels vs their composites. The case tables and tiers are exported so more tiers can be
 * built from the same pieces.
 */
export {
  checkIds,
  defineBackendConformance,
  HOST_TOLERANCE,
  OFF_HOST_TOLERANCE,
  runConformanceCase,
  type BackendConformanceOptions,
  type CaseRunOptions,
} from './define.js';
export type { CaseContext, ConformanceCase, ConformanceTier, ExpectOptions, HostValues } from './types.js';
export { assertClose, assertEqual, ConformanceMismatch, type CloseOptions, type Metric, type Tolerance } from './compare.js';
export { SeededRandom } from './prng.js';
export * as hostMath from './host-math.js';
export { kernelTiers, primitiveTier, referenceTier, fusedTier, narrowTier } from './tiers/index.js';
export { NARROW_FORMATS, type NarrowFormat } from './tiers/narrow.js';
export { REFERENCE_CASES, type InputSpec, type ReferenceCase } from './tiers/reference.js';
export {
  WEIGHT_NORM_CASES,
  DORA_COMPOSE_CASES,
  WRITE_SLICE_CASES,
  RMS_NORM_CASES,
  ROTARY_CASES,
  weightNormHost,
  type WeightNormCase,
  type DoraComposeCase,
  type WriteSliceCase,
  type RmsNormCase,
  type RotaryCase,
} from './tiers/fused.js';
export { MATMUL_CASES, MATMUL_REFERENCE_CASES, type MatmulCase } from './tables/matmul.js';
export { CONV2D_CASES, type Conv2dCase } from './tables/conv2d.js';
export {
  UNARY_CASES,
  UNARY_HOST,
  BINARY_CASES,
  BINARY_HOST,
  BROADCAST_CASES,
  type UnaryCase,
  type BinaryCase,
  type BroadcastCase,
} from './tables/elementwise.js';
export { modelTiers, autogradTier, doraInvariantsTier, peftParityTier, DEFAULT_FIXTURES_DIR } from './tiers/models.js';
export { gradCheck } from './tiers/grad-check.js';
export { relativeError } from './tiers/relative-error.js';
export { handleBytes, watchHandles, type HandleWatcher } from './watch-handles.js';
