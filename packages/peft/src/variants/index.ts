import { doraVariant } from './dora.js';
import { loraVariant } from './lora.js';
import type { AdapterVariant } from './variant.js';

export type * from './variant.js';
export { doraVariant, loraVariant };

/** The variant a config asks for (PEFT's `resolve_lora_variant`; other variants are refused by LoraConfig). */
export function resolveVariant(options: { readonly useDora: boolean }): AdapterVariant {
  return options.useDora ? doraVariant : loraVariant;
}
