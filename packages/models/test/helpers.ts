/** Shared by the model tests: fixture paths, the CPU backend, and the error metric of CONTRIBUTING. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dorajs/backend-cpu';
import type { Backend, HostTensor } from '@dorajs/core';
import { readSafetensors } from '@dorajs/core/node';
import { afterEach, beforeEach } from 'vitest';

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

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dorajs-models-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Registers a temporary root per test (removed after it) and returns a maker of fresh empty folders in it,
 * for tests that write several checkpoints.
 */
export function useTempFolders(): () => Promise<string> {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  beforeEach(async () => {
    tmp = await tempDir();
  });
  afterEach(async () => {
    await tmp.cleanup();
  });
  return async () => {
    const dir = join(tmp.dir, `m${n++}`);
    await mkdir(dir);
    return dir;
  };
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

/** The error a function throws (a test failure when it returns). */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}
