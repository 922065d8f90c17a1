/** JSON-lines text datasets: one `{"text": "…"}` object per line; blank lines are skipped. */
import { DatasetError } from '../errors.js';
import { readFile } from '#node-fs';

export interface TextRecord {
  readonly text: string;
  /** 1-based line number in the file, for error messages. */
  readonly line: number;
}

/** Parses JSONL; a line that is not JSON, or has no string `text`, is a DatasetError naming file and line. */
export function parseJsonlTexts(contents: string, file: string): TextRecord[] {
  const out: TextRecord[] = [];
  const lines = contents.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new DatasetError(`not valid JSON (${(e as Error).message})`, file, i + 1);
    }
    const text = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as { text?: unknown }).text : undefined;
    if (typeof text !== 'string')
      throw new DatasetError(
        `expected an object with a string "text" field, got ${raw.length > 60 ? `${raw.slice(0, 60)}…` : raw}`,
        file,
        i + 1,
      );
    out.push({ text, line: i + 1 });
  }
  if (out.length === 0) throw new DatasetError('no records (expected one {"text": ...} object per line)', file);
  return out;
}

export async function readJsonlTexts(file: string): Promise<TextRecord[]> {
  let contents: string;
  try {
    contents = await readFile(file, 'utf8');
  } catch (e) {
    throw new DatasetError(`cannot read: ${(e as Error).message}`, file, undefined, { cause: e });
  }
  return parseJsonlTexts(contents, file);
}
