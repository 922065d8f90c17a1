import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type HostTensor, parseSafetensors, toFloat32 } from '@dorajs/core';
import { main } from '../src/main.js';

export const FIXTURES = new URL('../../../fixtures/peft/', import.meta.url).pathname;

export function tempDir(prefix = 'dora-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in-process and captures its output. */
export async function dora(...argv: string[]): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { out: (t) => (stdout += t), err: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

export function readTensors(path: string): ReadonlyMap<string, HostTensor> {
  return parseSafetensors(readFileSync(path), path).tensors;
}

export function floats(map: ReadonlyMap<string, HostTensor>, key: string): Float32Array {
  const h = map.get(key);
  if (!h) throw new Error(`no key ${key}`);
  return toFloat32(h, { file: '?', key });
}

/** Writes the fixture's `input.ids` as a JSON ids file. */
export function idsJson(caseName: string, dir: string): string {
  const t = readTensors(join(FIXTURES, caseName, 'tensors.safetensors')).get('input.ids')!;
  const flat = Array.from(t.data as BigInt64Array, Number);
  const [b, s] = t.shape as [number, number];
  const rows = Array.from({ length: b }, (_, i) => flat.slice(i * s, (i + 1) * s));
  const path = join(dir, 'ids.json');
  writeFileSync(path, JSON.stringify(rows));
  return path;
}

/** The tiny Llama fixture with a word-level tokenizer, copied into `dir`. */
export function tinyLlamaFolder(dir: string): string {
  const model = join(dir, 'model');
  mkdirSync(model);
  for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(model, f), readFileSync(join(FIXTURES, 'llama', 'base', f)));
  writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(tinyTokenizer()));
  return model;
}

/** A word-level tokenizer.json over a few words (ids below the tiny Llama's vocabulary of 96). */
function tinyTokenizer(): unknown {
  const vocab: Record<string, number> = { '[UNK]': 0, a: 1, b: 2, c: 3 };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '[UNK]' },
  };
}
