/** The model-folder tokenizer, chat templates, streaming-safe detokenization and generation_config.json. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GenerationError, TextStreamer, TokenizerError } from '../src/index.js';
import { loadGenerationConfig, loadTokenizer } from '../src/node.js';
import { rejection, tempDir } from './helpers.js';

const BYTE_BPE = fileURLToPath(new URL('../../../fixtures/tokenizer/byte-bpe/', import.meta.url));
const [BOS, EOS] = [261, 262];

describe('TextTokenizer', () => {
  it('encodes with the BOS its post-processor adds, decodes back, and knows its specials', async () => {
    const t = await loadTokenizer(BYTE_BPE);
    const ids = t.encode('hello world');
    expect(ids[0]).toBe(BOS);
    expect(ids).toContain(258); // the 'hell' merge
    expect(t.encode('hello world', { addSpecialTokens: false })).toEqual(ids.slice(1));
    expect(t.decode(ids, { skipSpecialTokens: true })).toBe('hello world');
    expect(t.decode(ids)).toBe('<s>hello world');
    expect([t.bosTokenId, t.eosTokenId, t.vocabSize]).toEqual([BOS, EOS, 263]);
  });

  it('renders the chat template and encodes it without a second BOS', async () => {
    const t = await loadTokenizer(BYTE_BPE);
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ];
    expect(t.applyChatTemplate(messages)).toBe('<s><|system|>Be brief.</s><|user|>Hi</s><|assistant|>');
    expect(t.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe('<s><|system|>Be brief.</s><|user|>Hi</s>');
    const ids = t.encodeChat(messages);
    expect(ids.filter((id) => id === BOS)).toHaveLength(1);
    expect(ids[0]).toBe(BOS);
    expect(ids.filter((id) => id === EOS)).toHaveLength(2);
  });

  it('a failing chat template, a missing one and a tokenizer for a bigger vocabulary are typed one-line errors', async () => {
    const t = await loadTokenizer(BYTE_BPE);
    const failing = (() => {
      try {
        t.applyChatTemplate([{ role: 'tool', content: 'x' }]);
      } catch (error) {
        return error as Error;
      }
      throw new Error('expected a throw');
    })();
    expect(failing).toBeInstanceOf(TokenizerError);
    expect(failing.message).toMatch(/tokenizer\.json: chat template failed: .*unknown role tool/);
    expect(failing.message).not.toContain('\n');
    expect(() => t.checkVocabulary(200)).toThrow(/produces ids up to 262, but the model \(config\.json\) has vocab_size 200/);
    expect(() => t.checkVocabulary(263)).not.toThrow();
    const { dir, cleanup } = await tempDir();
    await writeFile(
      join(dir, 'tokenizer.json'),
      await import('node:fs/promises').then((fs) => fs.readFile(join(BYTE_BPE, 'tokenizer.json'))),
    );
    const bare = await loadTokenizer(dir);
    expect(() => bare.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/has no chat_template/);
    expect(await rejection(loadTokenizer(join(dir, 'missing')))).toBeInstanceOf(TokenizerError);
    await cleanup();
  });
});

describe('TextStreamer', () => {
  it('never emits a broken multi-byte character, emits as it goes, and ends with the full text', async () => {
    const t = await loadTokenizer(BYTE_BPE);
    const text = 'héllo wörld 😀 — 日本';
    const ids = t.encode(text, { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(text.length); // multi-byte characters span several byte tokens
    const pieces: string[] = [];
    const streamer = new TextStreamer(t, (piece) => pieces.push(piece));
    for (const id of [...ids, EOS]) streamer.put([id]);
    const beforeEnd = pieces.length;
    streamer.end();
    expect(beforeEnd).toBeGreaterThan(5);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    expect(pieces.join('')).toBe(text);
    // A planted cut: decoding a prefix that ends inside '😀' does give U+FFFD, which the streamer held back.
    const cut = ids.findIndex((_, i) => t.decode(ids.slice(0, i + 1)).endsWith('\uFFFD'));
    expect(cut).toBeGreaterThanOrEqual(0);
  });
});

describe('generation_config.json', () => {
  it('reads EOS and limits, and refuses a bad value naming the file', async () => {
    expect(await loadGenerationConfig(BYTE_BPE)).toEqual({ bosTokenId: BOS, eosTokenId: EOS, maxNewTokens: 8 });
    const { dir, cleanup } = await tempDir();
    expect(await loadGenerationConfig(dir)).toEqual({});
    await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ temperature: -1, do_sample: true }));
    const error = await rejection(loadGenerationConfig(dir));
    expect(error).toBeInstanceOf(GenerationError);
    expect(error.message).toMatch(/generation_config\.json: temperature must be a positive number, got -1/);
    await cleanup();
  });
});
