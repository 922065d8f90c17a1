/** A tiny Hugging Face model folder (Llama or GPT-2) with a character-level BPE tokenizer.json. */
import { type Backend, Random, toHostTensor } from '@dorajs/core';
import { saveSafetensors } from '@dorajs/core/node';
import { createModel } from '@dorajs/models';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const SPECIALS = ['<unk>', '<s>', '</s>'];
const CHARS = 'abcdefghijklmnopqrstuvwxyz.,!?'.split('');
export const TINY_VOCAB = 40;

export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (const t of [...SPECIALS, ...CHARS, 'th', 'the']) vocab[t] = Object.keys(vocab).length;
  const special = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((s, i) => special(s, i)),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: ['t h', 'th e'],
    },
  };
}

export function tinyConfig(modelType: 'llama' | 'gpt2'): Record<string, unknown> {
  if (modelType === 'llama') {
    return {
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      vocab_size: TINY_VOCAB,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      max_position_embeddings: 64,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float32',
    };
  }
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: TINY_VOCAB,
    n_embd: 16,
    n_layer: 2,
    n_head: 2,
    n_positions: 64,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
    bos_token_id: 1,
    eos_token_id: 2,
  };
}

/** Writes config.json, model.safetensors (seeded random weights), tokenizer.json and tokenizer_config.json. */
export async function writeTinyModelFolder(dir: string, modelType: 'llama' | 'gpt2', backend: Backend): Promise<string> {
  await mkdir(dir, { recursive: true });
  const config = tinyConfig(modelType);
  const model = createModel(config, { backend, random: new Random(7) });
  const tensors = new Map<string, Awaited<ReturnType<typeof toHostTensor>>>();
  for (const [name, p] of model.namedParameters()) tensors.set(name, await toHostTensor(p));
  model.dispose();
  await saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }));
  return dir;
}

/** A small corpus the tiny model can learn: a few repeated sentences. */
export function tinyCorpus(lines: number): string {
  const sentences = ['the cat sat on the mat.', 'the dog ate the bone.', 'a bird sang in the tree.', 'the sun is hot.'];
  return Array.from({ length: lines }, (_, i) => JSON.stringify({ text: sentences[i % sentences.length] })).join('\n');
}
