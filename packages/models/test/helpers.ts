/** Shared by the model tests: fixture paths, the CPU backend, and the error metric of CONTRIBUTING. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend, HostTensor } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';

export const FIXTURES = fileURLToPath(new URL('../../../fixtures/peft/', import.meta.url));

export const fixtureDir = (name: string): string => join(FIXTURES, name);
export const baseDir = (name: string): string => join(FIXTURES, name, 'base');

export function cpu(): Backend {
  return createCpuBackend();
}

/** `tensors.safetensors` of a case, keyed as in the file. */
export async function fixtureTensors(name: string): Promise<ReadonlyMap<string, HostTensor>> {
  return (await readSafetensors(join(FIXTURES, name, 'tensors.safetensors'))).tensors;
}

export function hostFloat32(t: HostTensor | undefined, what: string): Float32Array {
  if (!t || t.dtype !== 'F32') throw new Error(`fixture tensor ${what} is missing or not F32`);
  return t.data;
}

/** max|a − b| / max|b|, the parity metric in CONTRIBUTING. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  // Both all-zero (an untouched zero bias) is a match, not 0/0.
  return num === 0 ? 0 : num / den;
}

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dorajs-models-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The error a promise rejects with (a test failure when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}
