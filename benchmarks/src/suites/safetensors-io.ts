/**
 * safetensors throughput: serialising, atomic saving, parsing a buffer, and reading a file tensor by
 * tensor. A checkpoint-like file of float32 tensors (64 MiB; 8 MiB in quick runs).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSafetensors, serializeSafetensors, type HostTensor } from '@dorajs/core';
import { readSafetensors, saveSafetensors } from '@dorajs/core/node';
import { gbpsOf, timeIt, type BenchResult, type BenchSuite } from '../harness.js';

const TENSORS = 16;

const suite: BenchSuite = {
  name: 'safetensors-io',
  async run({ quick }) {
    const mib = quick ? 8 : 64;
    const floatsEach = (mib * 2 ** 20) / 4 / TENSORS;
    const tensors: Record<string, HostTensor> = {};
    for (let i = 0; i < TENSORS; i++) {
      const data = new Float32Array(floatsEach).map((_, j) => (i * 31 + j) % 97);
      tensors[`layers.${i}.weight`] = { dtype: 'F32', shape: [floatsEach / 256, 256], data };
    }
    const bytes = mib * 2 ** 20;
    const shape = `${TENSORS}x${floatsEach} f32 (${mib} MiB)`;
    const opts = { warmup: 1, iters: quick ? 3 : 5 };
    const folder = await mkdtemp(join(tmpdir(), 'dorajs-bench-io-'));
    try {
      const path = join(folder, 'model.safetensors');
      const row = (name: string, medianMs: number, notes?: string): BenchResult => ({
        name,
        backend: 'node',
        shape,
        medianMs,
        gbps: gbpsOf(bytes, medianMs),
        threads: 1,
        ...(notes ? { notes } : {}),
      });
      const serialize = await timeIt(() => serializeSafetensors(tensors), opts);
      const save = await timeIt(() => saveSafetensors(path, tensors), opts);
      const file = await readFile(path);
      const parse = await timeIt(() => parseSafetensors(file, path), opts);
      const read = await timeIt(() => readSafetensors(path), opts);
      return [
        row('serialize', serialize.medianMs, 'into one buffer'),
        row('save', save.medianMs, 'temp file + fsync + rename; page cache'),
        row('parse', parse.medianMs, 'buffer already in memory; one copy per tensor'),
        row('read', read.medianMs, 'per-tensor reads; page cache'),
      ];
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  },
};
export default suite;
