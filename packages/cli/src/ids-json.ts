/**
 * A streaming reader for JSON ids files (`[[…], …]`, or a flat `[…]` for one sequence). Bytes are fed in
 * chunks of any size; ids go straight into a growing Int32Array. So memory is bounded by what is valid —
 * 4 bytes (at most 8 while growing) per id already accepted, plus one number token of at most 64
 * characters — and never by the size of the file: a gigabyte of whitespace, brackets or digits costs
 * nothing, and the first byte that cannot belong to a valid ids file stops the read with its offset.
 *
 * Accepts exactly what `JSON.parse` followed by the ids checks accepted before (rectangular, non-empty,
 * integer JSON numbers such as `3`, `3.0` or `3e0` that fit in int32), and names the first violation.
 */
import type { HostTensor } from '@dorajs/core';
import { InputFileError } from './errors.js';

/** Most ids a file may hold (as int32 they take 256 MiB). */
export const MAX_IDS = 64 * 2 ** 20;
/** Longest number token accepted ("2147483647", "-2.147483647e9", "1.000…0"). */
const MAX_NUMBER_CHARS = 64;

enum State {
  /** Before the outer `[` (a UTF-8 byte order mark and whitespace allowed). */
  Start,
  /** After the outer `[`: a row `[`, a first id (flat form) or `]`. */
  OuterFirst,
  /** Inside a row, expecting an id (or `]` right after the row's `[`). */
  RowValue,
  /** Inside a row after an id: `,` or `]`. */
  RowAfterValue,
  /** After a row's `]`: `,` or the outer `]`. */
  OuterAfterRow,
  /** After a `,` between rows: `[`. */
  OuterNextRow,
  /** After the outer `]`: whitespace only. */
  Done,
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isNumberByte = (c: number): boolean => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

export class IdsJsonReader {
  readonly path: string;
  readonly maxIds: number;
  #state = State.Start;
  /** Bytes consumed so far (the offset errors name). */
  #offset = 0;
  #flat = false;
  #number = '';
  #values = new Int32Array(1024);
  #count = 0;
  /** Ids in row 0 once it is closed, else -1. */
  #seq = -1;
  #row = 0;
  #inRow = 0;

  constructor(path: string, maxIds: number = MAX_IDS) {
    this.path = path;
    this.maxIds = maxIds;
  }

  /** Feeds the next bytes of the file. Throws InputFileError at the first byte that cannot be valid. */
  push(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++, this.#offset++) {
      const c = chunk[i]!;
      if (this.#number.length > 0) {
        if (isNumberByte(c)) {
          this.#number += String.fromCharCode(c);
          if (this.#number.length > MAX_NUMBER_CHARS) {
            this.#fail(`a number longer than ${MAX_NUMBER_CHARS} characters`, this.#offset - MAX_NUMBER_CHARS);
          }
          continue;
        }
        this.#endNumber();
      }
      // Whitespace is skipped here, without a call: a file may hold any amount of it.
      if (isSpace(c) && this.#bomLeft === 0) continue;
      this.#byte(c);
    }
  }

  /** The ids as an int32 [batch, seq] tensor, once the whole file has been pushed. */
  end(): HostTensor {
    if (this.#number.length > 0) this.#endNumber();
    if (this.#state !== State.Done) this.#fail('unexpected end of file (the outer array is not closed)');
    if (this.#count === 0) this.#fail('no ids (expected a non-empty [[…], …] array)');
    const seq = this.#flat ? this.#count : this.#seq;
    return { dtype: 'I32', shape: [this.#count / seq, seq], data: this.#values.slice(0, this.#count) };
  }

  #byte(c: number): void {
    if (this.#bomLeft > 0) {
      this.#bom(c);
      return;
    }
    if (isSpace(c)) return;
    switch (this.#state) {
      case State.Start:
        if (this.#offset === 0 && c === 0xef) this.#bom();
        else if (c === 0x5b) this.#state = State.OuterFirst;
        else this.#unexpected(c, "'['");
        return;
      case State.OuterFirst:
        if (c === 0x5d) this.#fail('no ids (expected a non-empty [[…], …] array)');
        if (c === 0x5b) {
          this.#state = State.RowValue;
          return;
        }
        this.#flat = true;
        this.#state = State.RowValue;
        this.#startNumber(c);
        return;
      case State.RowValue:
        if (c === 0x5d && this.#inRow === 0 && !this.#flat) this.#fail(`row ${this.#row} is empty`);
        if (!this.#flat && (c === 0x5b || c === 0x7b)) this.#fail('nested more than 2 levels deep (expected [[…], …])');
        this.#startNumber(c);
        return;
      case State.RowAfterValue:
        if (c === 0x2c) this.#state = State.RowValue;
        else if (c === 0x5d) this.#closeRow();
        else this.#unexpected(c, "',' or ']'");
        return;
      case State.OuterAfterRow:
        if (c === 0x2c) this.#state = State.OuterNextRow;
        else if (c === 0x5d) this.#state = State.Done;
        else this.#unexpected(c, "',' or ']'");
        return;
      case State.OuterNextRow:
        if (c !== 0x5b) this.#unexpected(c, "'[' (every row is an array)");
        this.#state = State.RowValue;
        return;
      case State.Done:
        this.#unexpected(c, 'nothing after the closing bracket');
    }
  }

  /** Bytes of a UTF-8 byte order mark still to come. */
  #bomLeft = 0;

  #bom(c?: number): void {
    if (c === undefined) {
      this.#bomLeft = 2;
      return;
    }
    const want = this.#bomLeft === 2 ? 0xbb : 0xbf;
    if (c !== want) this.#unexpected(c, "'['");
    this.#bomLeft--;
  }

  #startNumber(c: number): void {
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) {
      this.#unexpected(c, `an integer id at ${this.#flat ? `[0, ${this.#inRow}]` : `[${this.#row}, ${this.#inRow}]`}`);
    }
    // A row longer than row 0 is refused at its first extra id, before that id is read.
    if (!this.#flat && this.#seq >= 0 && this.#inRow >= this.#seq) {
      this.#fail(`ids are not rectangular: row 0 has ${this.#seq} ids, row ${this.#row} has more`);
    }
    this.#number = String.fromCharCode(c);
  }

  #endNumber(): void {
    const text = this.#number;
    this.#number = '';
    const b = this.#flat ? 0 : this.#row;
    const s = this.#inRow;
    const at = this.#offset - text.length;
    if (!JSON_NUMBER.test(text)) this.#fail(`'${text}' at [${b}, ${s}] is not a JSON number`, at);
    const id = Number(text);
    if (!Number.isInteger(id)) this.#fail(`id ${text} at [${b}, ${s}] is not an integer`, at);
    if (id < -(2 ** 31) || id >= 2 ** 31) this.#fail(`id ${text} at [${b}, ${s}] does not fit in int32`, at);
    if (this.#count >= this.maxIds) this.#fail(`more than ${this.maxIds} ids (use a safetensors ids file)`, at);
    if (this.#count === this.#values.length) {
      const grown = new Int32Array(Math.min(this.maxIds, this.#values.length * 2));
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#count++] = id;
    this.#inRow++;
    this.#state = State.RowAfterValue;
  }

  #closeRow(): void {
    if (this.#flat) {
      this.#state = State.Done;
      return;
    }
    if (this.#seq < 0) this.#seq = this.#inRow;
    else if (this.#inRow !== this.#seq) {
      this.#fail(`ids are not rectangular: row 0 has ${this.#seq} ids, row ${this.#row} has ${this.#inRow}`);
    }
    this.#row++;
    this.#inRow = 0;
    this.#state = State.OuterAfterRow;
  }

  #unexpected(c: number, expected: string): never {
    const found = c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
    this.#fail(`expected ${expected}, found ${found}`);
  }

  #fail(reason: string, at: number = this.#offset): never {
    throw new InputFileError(`${this.path}: invalid ids JSON at byte ${at}: ${reason}`);
  }
}

/** Reads JSON ids held in memory (the file reader streams the same way). */
export function parseIdsJson(bytes: Uint8Array, path: string): HostTensor {
  const reader = new IdsJsonReader(path);
  reader.push(bytes);
  return reader.end();
}
