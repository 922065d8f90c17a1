/** `dora generate`: greedy text as the library generates it, timing on stderr, typed errors before any work. */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { Random, toHostTensor } from '@dorajs/core';
import { saveSafetensors } from '@dorajs/core/node';
import { type CausalLM, createModel, generate } from '@dorajs/models';
import { loadModel, loadTokenizer } from '@dorajs/models/node';
import { describe, expect, it } from 'vitest';
import { dora, tempDir } from './helpers.js';

const TOKENIZER = new URL('../../../fixtures/tokenizer/byte-bpe/', import.meta.url).pathname;

/** A random tiny Llama folder with the byte-level test tokenizer. */
async function modelFolder(vocab: number, extraConfig: Record<string, unknown> = {}): Promise<string> {
  const dir = join(tempDir(), 'model');
  mkdirSync(dir);
  const config = {
    model_type: 'llama',
    vocab_size: vocab,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    ...extraConfig,
  };
  const backend = createCpuBackend();
  const model = createModel(config, { backend, random: new Random(4) }) as CausalLM;
  const tensors = new Map();
  for (const [name, p] of model.namedParameters()) tensors.set(name, await toHostTensor(p, 'F32'));
  await saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  model.dispose();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(TOKENIZER, f), join(dir, f));
  return dir;
}

describe('dora generate', () => {
  it('prints the greedy continuation the library generates, and tokens/s on stderr', async () => {
    const dir = await modelFolder(263);
    const r = await dora('generate', '--model', dir, '--prompt', 'hello world', '--max-new-tokens', '6', '--backend', 'cpu');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/prompt \d+ tokens, [\d.]+ tokens\/s; decode \d tokens, [\d.]+ tokens\/s/);
    const backend = createCpuBackend();
    const { model } = await loadModel(dir, { backend });
    const tokenizer = await loadTokenizer(dir);
    const out = await generate(model, [tokenizer.encode('hello world')], { maxNewTokens: 6, eosTokenId: 262 });
    expect(r.stdout).toBe(`${tokenizer.decode(out.newTokens[0]!, { skipSpecialTokens: true })}\n`);
    expect(out.newTokens[0]!.length).toBeGreaterThan(0);
    model.dispose();
  });

  it('refuses a tokenizer for another vocabulary, a failing chat template, a too-long prompt and bad flags', async () => {
    const small = await modelFolder(200);
    let r = await dora('generate', '--model', small, '--prompt', 'hi', '--backend', 'cpu');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dora: TokenizerError: .*tokenizer\.json: produces ids up to 262, but the model .* has vocab_size 200/m);
    const dir = await modelFolder(263, { max_position_embeddings: 4 });
    r = await dora('generate', '--model', dir, '--prompt', 'hello world, again', '--backend', 'cpu');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dora: GenerationError: generate: a prompt of \d+ tokens is longer than the model's 4 positions/m);
    expect(r.stderr).not.toContain('backend'); // refused from config.json, before a backend or the weights were touched
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: '{% if %}' }));
    r = await dora('generate', '--model', dir, '--chat', '--backend', 'cpu');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dora: TokenizerError: .*chat template failed/m);
    expect(r.stderr).not.toContain('backend'); // refused before a backend or the weights were touched
    r = await dora('generate', '--model', dir, '--prompt', 'x', '--chat');
    expect(r.stderr).toMatch(/give exactly one of --prompt TEXT and --chat/);
    r = await dora('generate', '--model', dir, '--prompt', 'x', '--max-new-tokens', 'lots');
    expect(r.stderr).toMatch(/--max-new-tokens must be an integer, got 'lots'/);
  });

  it('refuses an adapter made for another architecture before attaching it', async () => {
    const phi3 = new URL('../../../fixtures/models/phi3/adapter/', import.meta.url).pathname;
    const dir = await modelFolder(263);
    const r = await dora('generate', '--model', dir, '--adapter', phi3, '--prompt', 'hi', '--backend', 'cpu');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^dora: AdapterMismatchError: .*adapter_model\.safetensors: tensor '.*qkv_proj\.lora_A\.weight' adapts module 'model\.layers\.0\.self_attn\.qkv_proj', which this LlamaForCausalLM does not have; the adapter was made for a Phi3ForCausalLM$/m,
    );
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toContain('backend'); // refused from config.json and the adapter's header, before any weight was read
  });
});
