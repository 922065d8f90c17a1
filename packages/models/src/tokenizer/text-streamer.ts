/**
 * transformers' TextStreamer for one row: decodes the tokens so far and hands the callback only text that
 * can no longer change — a trailing incomplete UTF-8 sequence (U+FFFD from a byte-level token that ends
 * mid-character) is held back until the next token completes it, so no broken character is ever printed.
 */
import type { GenerationStreamer } from '../generation/generate.js';
import type { TextTokenizer } from './text-tokenizer.js';

export interface TextStreamerOptions {
  /** Drop special tokens (EOS, …) from the text (default true). */
  readonly skipSpecialTokens?: boolean;
  /** Which row of the batch to stream (default 0). */
  readonly row?: number;
}

export class TextStreamer implements GenerationStreamer {
  private readonly _tokens: number[] = [];
  private _printed = 0;
  private _done = false;

  constructor(
    private readonly tokenizer: Pick<TextTokenizer, 'decode'>,
    private readonly onText: (text: string) => void,
    private readonly options: TextStreamerOptions = {},
  ) {}

  put(tokens: readonly number[]): void {
    if (this._done) return;
    this._tokens.push(tokens[this.options.row ?? 0]!);
    const text = this.decode();
    let stable = text.length;
    while (stable > this._printed && text.charCodeAt(stable - 1) === 0xfffd) stable--;
    this.emit(text.slice(0, stable));
  }

  end(): void {
    if (this._done) return;
    this._done = true;
    this.emit(this.decode());
  }

  /** Row tokens finished early are followed by pad ids; `finish` stops taking them. */
  finish(): void {
    this._done = true;
  }

  private decode(): string {
    return this.tokenizer.decode(this._tokens, { skipSpecialTokens: this.options.skipSpecialTokens ?? true });
  }

  private emit(text: string): void {
    if (text.length > this._printed) {
      this.onText(text.slice(this._printed));
      this._printed = text.length;
    }
  }
}
