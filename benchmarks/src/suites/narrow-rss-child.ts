/**
 * Child process of the narrow suite's `--size 1b` row: loads the bfloat16 checkpoint in `argv[2]` on the CPU backend
 * keeping it 2 bytes wide, runs one forward pass (generate: a short prompt, one new token), and prints its peak RSS
 * (process.resourceUsage().maxRSS: the whole process, Node itself included) and what it held, as one JSON line.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { BYTES_PER_ELEMENT } from '@dorajs/core';
import { generate } from '@dorajs/models';
import { loadModel } from '@dorajs/models/node';

const folder = process.argv[2]!;
const baseRss = process.resourceUsage().maxRSS * 1024;
const backend = createCpuBackend({ threads: 1 });
const t0 = performance.now();
const { model } = await loadModel(folder, { backend, keepWidth: true });
const loadMs = performance.now() - t0;
model.eval();
const weightBytes = [...new Set(model.parameters())].reduce((s, p) => s + p.size * BYTES_PER_ELEMENT[p.dtype], 0);
const t1 = performance.now();
const out = await generate(model, [[1, 2, 3, 4, 5, 6, 7, 8]], { maxNewTokens: 1 });
const forwardMs = performance.now() - t1;
console.log(
  JSON.stringify({
    peakRss: process.resourceUsage().maxRSS * 1024,
    baseRss,
    weightBytes,
    loadMs,
    forwardMs,
    tokens: out.sequences[0]!.length,
  }),
);
backend.dispose();
