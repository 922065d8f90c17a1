import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
