// Records an H200 run's JSON (benchmarks/h200/results-*/webgpu-*.json, torch.json) as suite rows in
// benchmarks/results/latest.json and regenerates docs/benchmarks.md, so the GPU numbers sit beside the CPU ones.
//   node benchmarks/h200/import.mjs <results-dir> [<suite-name>]      (after `pnpm build`)
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadResults, mergeResults, writeAtomically } from '../dist/results.js';
import { renderMarkdown } from '../dist/report.js';

const [dir, suite = 'h200-webgpu'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node benchmarks/h200/import.mjs <results-dir> [suite]');
  process.exit(2);
}
const root = new URL('../..', import.meta.url).pathname;
const latestPath = join(root, 'benchmarks/results/latest.json');
const files = (await readdir(dir)).filter((f) => /^webgpu-.*\.json$/.test(f)).sort();
const results = [];
let device = '';
let seconds = 0;
for (const f of files) {
  const section = JSON.parse(await readFile(join(dir, f), 'utf8'));
  device ||= section.device ?? '';
  seconds += section.seconds ?? 0;
  for (const row of section.rows ?? []) results.push(row);
}
try {
  // PyTorch's figures from the same run, as reference rows (ratios are in the webgpu rows' notes).
  const torch = JSON.parse(await readFile(join(dir, 'torch.json'), 'utf8'));
  const n = 4096;
  if (torch.sgemm_fp32_4096_tflops) {
    results.push({
      name: 'matmul fp32 (torch.matmul, TF32 off)',
      backend: 'pytorch',
      shape: `${n}x${n}x${n}`,
      medianMs: (2 * n ** 3) / (torch.sgemm_fp32_4096_tflops * 1e9),
      gflops: torch.sgemm_fp32_4096_tflops * 1000,
      threads: 1,
      notes: 'cuBLAS, same run',
    });
  }
  for (const [shape, v] of Object.entries(torch.weight_norm ?? {})) {
    results.push({
      name: 'weight norm (PyTorch eager)',
      backend: 'pytorch',
      shape,
      medianMs: v.torch_ms,
      threads: 1,
      notes: `read-W-once floor ${v.read_W_once_floor_ms.toFixed(4)} ms at ${torch.copy_TBps_rw.toFixed(2)} TB/s copy`,
    });
  }
} catch {
  // this run has no torch.json
}
if (results.length === 0) throw new Error(`no webgpu-*.json rows in ${dir}`);
const stamp = (await readFile(join(dir, files[0]), 'utf8')).match(/"date":\s*"([^"]+)"/)?.[1];
const run = {
  date: stamp ?? new Date().toISOString(),
  machine: { cpu: `NVIDIA H200 through Dawn (${device})`, cores: 16, memoryGiB: 128, node: 'v20.20.2', platform: 'linux-x64' },
  quick: false,
};
const previous = await loadResults(latestPath);
const merged = mergeResults(
  previous,
  [{ suite, run, results }],
  previous ? { date: previous.date, machine: previous.machine, quick: false } : run,
);
await writeAtomically(latestPath, `${JSON.stringify(merged, null, 2)}\n`);
await writeAtomically(join(root, 'docs/benchmarks.md'), renderMarkdown(merged));
console.log(`recorded ${results.length} rows from ${files.length} sections (${seconds.toFixed(0)} s of device time) as suite '${suite}'`);
