/**
 * Causal-LM examples from text, as PEFT's dora_finetuning.py builds them: tokenise, truncate to
 * `cutoffLen`, labels = input ids. Batches are padded on the right to their longest example (not to
 * cutoffLen: the padded tail cannot influence earlier positions under a causal mask) and padding is
 * labelled −100 so it is never learned.
 */
import { type Backend, tensor } from '@dorajs/core';
import { DatasetError } from '../errors.js';
import { IGNORE_INDEX } from '../loss.js';
import type { Batch } from '../trainer.js';
import type { TextRecord } from './jsonl.js';
import type { TextTokenizer } from './tokenizer.js';

export interface TokenizedExample {
  readonly ids: Int32Array;
  readonly line: number;
}

export interface TokenizeResult {
  readonly examples: TokenizedExample[];
  /** Records with fewer than 2 tokens: nothing to predict. */
  readonly skipped: number;
}

export function tokenizeRecords(
  records: readonly TextRecord[],
  tokenizer: TextTokenizer,
  options: { cutoffLen: number; vocabSize: number; file: string },
): TokenizeResult {
  const examples: TokenizedExample[] = [];
  let skipped = 0;
  for (const r of records) {
    const ids = tokenizer.encode(r.text).slice(0, options.cutoffLen);
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= options.vocabSize);
    if (bad !== undefined) {
      throw new DatasetError(
        `token id ${bad} is outside the model's vocabulary [0, ${options.vocabSize}) (tokenizer and model do not match)`,
        options.file,
        r.line,
      );
    }
    if (ids.length < 2) {
      skipped++;
      continue;
    }
    examples.push({ ids: Int32Array.from(ids), line: r.line });
  }
  if (examples.length === 0) throw new DatasetError('no record has at least 2 tokens to train on', options.file);
  return { examples, skipped };
}

export function collateCausalLm(backend: Backend, padId: number): (examples: readonly TokenizedExample[]) => Batch {
  return (examples) => {
    const seqLen = Math.max(...examples.map((e) => e.ids.length));
    const ids = new Int32Array(examples.length * seqLen).fill(padId);
    const labels = new Int32Array(examples.length * seqLen).fill(IGNORE_INDEX);
    examples.forEach((e, b) => {
      ids.set(e.ids, b * seqLen);
      labels.set(e.ids, b * seqLen);
    });
    return { input: tensor(ids, [examples.length, seqLen], { backend }), labels, size: examples.length };
  };
}
