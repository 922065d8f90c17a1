export * from './dtype.js';
export * from './errors.js';
export * from './preview.js';
export * from './io/json-limits.js';
export type * from './backend/backend.js';
export * from './backend/registry.js';
export { checkFits, type PlannedTensor } from './backend/memory.js';
export * from './io/host-tensor.js';
export * from './io/safetensors.js';
export { DEFAULT_CHUNK_BYTES, SafetensorsReader } from './io/safetensors-reader.js';
export * from './io/source/file-source.js';
export * from './io/source/http-source.js';
export * from './io/source/browser-sources.js';
export * from './io/source/resolve-source.js';
export {
  type CacheEntryWriter,
  cacheStorageCache,
  cachingReader,
  type DownloadCache,
  defaultCache,
  directoryCache,
  opfsCache,
} from './io/source/download-cache.js';
export * from './tensor/shape.js';
export { fromHostTensor, toHostTensor } from './tensor/host.js';
export { type TensorWriter, tensorWriter } from './tensor/writer.js';
export {
  Tensor,
  Parameter,
  tensor,
  full,
  zeros,
  ones,
  scalarLike,
  fromHandle,
  setDefaultBackend,
  getDefaultBackend,
} from './tensor/tensor.js';
export type { CreateOptions } from './tensor/tensor.js';
export { tidy, keep, noGrad, isGradEnabled } from './tensor/scope.js';
export { backward, type BackwardOptions } from './tensor/autograd.js';
export { NormMemo } from './dora/norm-memo.js';
export { checkpoint, saveForRecompute, reusedInRecompute, type RecomputeDeps } from './tensor/checkpoint.js';
export * as ops from './ops/index.js';
export * from './nn/module.js';
export * from './nn/layers.js';
export * from './nn/quantized-linear.js';
export * from './dora/index.js';
export * from './optim/adamw.js';
export * from './random.js';
export * from './quant/format.js';
export { NF4_CODE, FP4_CODE, code4bit, dynamicMap } from './quant/codes.js';
export { quantizeHost, dequantizeHost, absmaxHost, checkQuantizeOptions, type QuantizeOptions } from './quant/host.js';
export { QuantizedWeight, type NestedAbsmax } from './quant/quantized-weight.js';
export type { Weight } from './ops/narrow.js';
