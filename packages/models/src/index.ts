export * from './errors.js';
export { ConfigFields, type JsonObject } from './config/config-fields.js';
export { ACTIVATION_NAMES, activationByName, type Activation } from './shared/activations.js';
export { causalSelfAttention, splitHeads, type AttentionInputs } from './shared/attention.js';
export { ForwardLayout, MASKED, type CausalLMForwardOptions, type MaskOptions } from './shared/forward-layout.js';
export { KVCache, type KVCacheOptions, type KVCacheSpec } from './shared/kv-cache.js';
export { CausalLM, type CausalLMConfig, type GradientCheckpointing, type ModelOptions } from './shared/causal-lm.js';
export { applyRope, ropeInverseFrequencies, ropeTables, type RopeTables } from './shared/rope.js';
export { checkIdsTensor, tokenIds, validateTokenIds, type TokenIdsInput, type TokenIdsOptions } from './shared/token-ids.js';
export { parseLlamaConfig, type LlamaConfig } from './llama/llama-config.js';
export {
  DecoderAttention,
  type DecoderContext,
  DecoderLayer,
  type DecoderMLP,
  type DecoderParts,
  LLAMA_PARTS,
  LlamaAttention,
  LlamaDecoderLayer,
  LlamaForCausalLM,
  LlamaMLP,
  LlamaModel,
} from './llama/llama-model.js';
export { type DecoderConfig, type DecoderDefaults, LAYER_TYPES, type LayerType, parseDecoderConfig } from './shared/decoder-config.js';
export {
  parseRope,
  ROPE_TYPES,
  ropeDependsOnLength,
  ropeFrequencies,
  type RopeConfig,
  type RopeFrequencies,
  type RopeParseOptions,
  type RopeType,
} from './shared/rope-scaling.js';
export { parseQwen2Config, Qwen2ForCausalLM, type Qwen2Config } from './qwen2/qwen2.js';
export { parseQwen3Config, Qwen3ForCausalLM, type Qwen3Config } from './qwen3/qwen3.js';
export { MistralForCausalLM, parseMistralConfig, type MistralConfig } from './mistral/mistral.js';
export { parsePhi3Config, Phi3Attention, Phi3ForCausalLM, Phi3MLP, PHI3_PARTS, type Phi3Config } from './phi3/phi3.js';
export {
  Gemma2DecoderLayer,
  Gemma2ForCausalLM,
  Gemma2RMSNorm,
  GEMMA2_PARTS,
  parseGemma2Config,
  type Gemma2Config,
} from './gemma2/gemma2.js';
export { parseGPT2Config, type GPT2Config } from './gpt2/gpt2-config.js';
export { GPT2Attention, GPT2Block, GPT2LMHeadModel, GPT2MLP, GPT2Model } from './gpt2/gpt2-model.js';
export { architectureFor, createModel, maxPositionsOf, modelTypeOf, SUPPORTED_MODEL_TYPES, type Architecture } from './architectures.js';
export {
  checkPromptFits,
  generate,
  type AdapterModel,
  type FinishReason,
  type GenerateOptions,
  type GenerateOutput,
  type GenerationStreamer,
} from './generation/generate.js';
export {
  parseGenerationConfig,
  resolveGenerationConfig,
  type GenerationConfig,
  type ResolvedGenerationConfig,
} from './generation/generation-config.js';
export { applyRepetitionPenalty, applyTopK, applyTopP, argMax, nextToken, softmax64 } from './generation/logits-processors.js';
export { TextTokenizer, type ChatMessage, type TextTokenizerFiles } from './tokenizer/text-tokenizer.js';
export { TextStreamer, type TextStreamerOptions } from './tokenizer/text-streamer.js';
export {
  loadModel,
  type CheckpointInfo,
  type CheckpointTensor,
  type LoadedModel,
  type LoadModelOptions,
  type QuantizeSpec,
} from './io/load-model.js';
export { QuantStateError } from './io/bnb.js';
export { CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE, type ModelConfigFile, type WeightsLayout } from './io/model-folder.js';
export { type AdapterDescription, checkAdapterFits, modelSkeleton } from './adapter/check-adapter.js';
