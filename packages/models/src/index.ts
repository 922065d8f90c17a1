export * from './errors.js';
export { ConfigFields, type JsonObject } from './config/config-fields.js';
export { ACTIVATION_NAMES, activationByName, type Activation } from './shared/activations.js';
export { causalSelfAttention, splitHeads, type AttentionInputs } from './shared/attention.js';
export { ForwardLayout, MASKED, type CausalLMForwardOptions, type MaskOptions } from './shared/forward-layout.js';
export { KVCache, type KVCacheOptions, type KVCacheSpec } from './shared/kv-cache.js';
export { CausalLM, type CausalLMConfig, type ModelOptions } from './shared/causal-lm.js';
export { applyRope, ropeInverseFrequencies, ropeTables, type RopeTables } from './shared/rope.js';
export { checkIdsTensor, tokenIds, validateTokenIds, type TokenIdsInput, type TokenIdsOptions } from './shared/token-ids.js';
export { parseLlamaConfig, type LlamaConfig } from './llama/llama-config.js';
export { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel } from './llama/llama-model.js';
export { parseGPT2Config, type GPT2Config } from './gpt2/gpt2-config.js';
export { GPT2Attention, GPT2Block, GPT2LMHeadModel, GPT2MLP, GPT2Model } from './gpt2/gpt2-model.js';
export { architectureFor, createModel, modelTypeOf, SUPPORTED_MODEL_TYPES, type Architecture } from './architectures.js';
export {
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
