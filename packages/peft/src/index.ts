/**
 * @dorajs/peft: Hugging Face PEFT's LoRA and DoRA for dorajs — the same API in camelCase and the same adapter
 * files, so adapters move between Python PEFT and dorajs in both directions without conversion.
 */
export {
  LoraConfig,
  PEFT_FORMAT_VERSION,
  type InitLoraWeights,
  type LoraBias,
  type LoraConfigOptions,
  type LoraRuntimeConfig,
} from './config/lora-config.js';
export {
  ADAPTER_CONFIG_NAME,
  ADAPTER_WEIGHTS_NAME,
  configFromJson,
  configFromJsonText,
  configToJson,
  configToJsonText,
} from './config/config-json.js';
export { pythonJsonDumps, PyFloat } from './config/python-json.js';
export * from './errors.js';
export {
  collectWarnings,
  collectWarningsAsync,
  setPeftWarningHandler,
  type PeftWarning,
  type PeftWarningCode,
  type PeftWarningHandler,
} from './warnings.js';
export {
  BASE_ADAPTER_NAME,
  getPeftModel,
  LoraModel,
  PeftModel,
  type ForwardOptions,
  type FromPretrainedOptions,
  type LoadAdapterOptions,
  type MergeOptions,
  type PeftModelOptions,
} from './peft-model.js';
export type { AdapterFiles, AdapterSource } from './io/adapter-source.js';
export { adapterBlobs, adapterFiles, adapterFileTensors, type SavePretrainedOptions, type SaveTarget } from './io/save-adapter.js';
export { DoraCaching } from './layers/dora-caching.js';
export { DoraMagnitude } from './layers/dora-magnitude.js';
export { LoraLayer, type LoraForwardOptions, type MergedAdapter, type MergeSpace } from './layers/lora-layer.js';
export {
  doraVariant,
  loraVariant,
  resolveVariant,
  type AdapterSettings,
  type AdapterTensors,
  type AdapterVariant,
  type MergeInput,
  type MergeRecord,
  type VariantHost,
  type VariantTensor,
} from './variants/index.js';
export { LoraLinear } from './layers/lora-linear.js';
export { LoraEmbedding } from './layers/lora-embedding.js';
export { LoraConvLayer } from './layers/lora-conv.js';
export { LoraConv2d } from './layers/lora-conv2d.js';
export { LoraConv1d, LoraConv3d } from './layers/lora-conv-nd.js';
export { LoraWeight } from './layers/lora-weight.js';
export { ModulesToSaveWrapper } from './layers/modules-to-save.js';
export { isLoraLayer } from './layers/kinds.js';
export type { WeightedCombination } from './tuner/weighted.js';
