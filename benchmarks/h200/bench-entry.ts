/**
 * The WebGPU side of the H200 comparison, bundled by run.sh into .gpu/bench.mjs (Dawn stays external).
 *   node .gpu/bench.mjs <section> <out.json> [--small] [--torch torch.json]
 *   node .gpu/bench.mjs summary <out-dir>
 * Sections run in separate processes (Dawn once crashed creating buffers after destroying large ones).
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWebGpuBackend } from '@dorajs/backend-webgpu';
import type { BenchResult } from '../src/harness.js';
import {
  measureDispatch,
  measureDoraLinear,
  measureGemv,
  measureLinearMatmul,
  measureMatmul,
  measureWeightNorm,
  type MeasureContext,
} from '../src/suites/webgpu-measure.js';

const [section = 'help', target = '', ...rest] = process.argv.slice(2);
const small = rest.includes('--small');
const torchPath = rest[rest.indexOf('--torch') + 1];

interface TorchFigures {
  sgemm_fp32_4096_tflops?: number;
  copy_TBps_rw?: number;
  weight_norm?: Record<string, { torch_ms: number }>;
  layer_4096_r16?: Record<string, number>;
  gpu?: string;
}

function readJson<T>(path: string | undefined): T | undefined {
  if (!path) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

async function runSection(): Promise<void> {
  const be = await createWebGpuBackend();
  const c: MeasureContext = { be, label: 'webgpu', trials: small ? 3 : 5, trialMs: small ? 40 : 100 };
  const torch = readJson<TorchFigures>(torchPath);
  // The read-once floor uses the copy bandwidth PyTorch measured in the same run (read + write bytes).
  const floorGbps = torch?.copy_TBps_rw ? torch.copy_TBps_rw * 1000 : undefined;
  const rows: BenchResult[] = [];
  const n = small ? 128 : 4096;
  const t0 = performance.now();
  // Written after every measurement, so a section cut short by its timeout keeps what it measured.
  const save = () =>
    writeFileSync(
      target,
      JSON.stringify(
        { section, device: be.description, features: [...be.device.features], seconds: (performance.now() - t0) / 1000, rows },
        null,
        1,
      ),
    );
  const add = async (measured: Promise<BenchResult[]>) => {
    const got = await measured;
    rows.push(...got);
    save();
    for (const r of got)
      console.log(
        `[webgpu] ${r.name} ${r.shape}: ${r.medianMs.toFixed(4)} ms${r.gflops ? ` ${(r.gflops / 1000).toFixed(2)} TFLOP/s` : ''}${r.gbps ? ` ${r.gbps.toFixed(0)} GB/s` : ''}${r.notes ? ` (${r.notes})` : ''}`,
      );
  };
  try {
    switch (section) {
      case 'matmul':
        // The default blocking first, then a sweep of others (DORA_WEBGPU_TILE's format), as separate rows.
        await add(measureMatmul(c, n, small ? ['tiled', 'smallK'] : ['tiled']));
        for (const tile of small ? ['4x8x8'] : ['8x8x16', '4x8x8', '4x8x16', '8x4x8', '4x4x16']) {
          await add(measureMatmul(c, n, ['tiled'], ` tile ${tile}`, { tile }));
        }
        // A Linear layer's x·Wᵀ at short and long T: split-K (auto, then forced) matters for short T.
        for (const T of small ? [16] : [64, 2048]) {
          await add(measureLinearMatmul(c, T, n, n, 'auto'));
          for (const splitK of T > 256 ? [] : small ? [1, 4] : [1, 4, 8, 16]) {
            await add(measureLinearMatmul(c, T, n, n, `split-K ${splitK}`, { splitK }));
          }
        }
        await add(measureGemv(c, n, n, 'rows per workgroup by N (4 here)'));
        for (const r of [8, 16]) await add(measureGemv(c, n, n, `${r} rows per workgroup`, { rows: r }));
        await add(measureGemv(c, n, n, '', {}, 'bfloat16'));
        if (!small) await add(measureGemv(c, 14336, 4096));
        break;
      case 'weightnorm':
        for (const [o, i] of small
          ? [
              [128, 128],
              [256, 128],
            ]
          : [
              [4096, 4096],
              [14336, 4096],
            ]) {
          for (const dtype of ['float32', 'bfloat16'] as const) {
            // The default (`tiles` on its own), then the row-streaming program the GEMV fusion uses.
            await add(measureWeightNorm(c, o!, i!, 16, dtype, floorGbps, '; auto (tiles)'));
            for (const r of [4, 16])
              await add(measureWeightNorm(c, o!, i!, 16, dtype, floorGbps, `; rows, ${r} per workgroup`, 'rows', { rows: r }));
          }
        }
        break;
      case 'dispatch':
        await add(measureDispatch(c, small ? 200 : 2000));
        break;
      case 'dora':
        await add(measureDoraLinear(c, n, n, 16, small ? [1, 16] : [1, 64, 2048]));
        break;
      default:
        throw new Error(`unknown section '${section}'`);
    }
  } finally {
    be.dispose();
  }
  save();
}

/** Puts our rows next to PyTorch's figures and checks the issue's goals. */
function summarize(dir: string): void {
  const torch = readJson<TorchFigures>(join(dir, 'torch.json'));
  const rows: BenchResult[] = [];
  const devices: string[] = [];
  for (const f of readdirSync(dir).filter((f) => f.startsWith('webgpu-') && f.endsWith('.json'))) {
    const part = readJson<{ rows: BenchResult[]; device: string }>(join(dir, f));
    if (part) {
      rows.push(...part.rows);
      devices.push(part.device);
    }
  }
  // Sweeps add rows of the same name and shape: take the fastest (its notes say which configuration).
  const find = (name: string, shape: string) =>
    rows.filter((r) => r.name === name && r.shape === shape).sort((a, b) => a.medianMs - b.medianMs)[0];
  const goals: Record<string, unknown> = {};
  const mm = rows.filter((r) => r.name === 'matmul fp32').sort((a, b) => (b.gflops ?? 0) - (a.gflops ?? 0))[0];
  if (mm?.gflops) {
    const cublas = torch?.sgemm_fp32_4096_tflops;
    goals.matmul = {
      shape: mm.shape,
      config: mm.notes,
      ours_tflops: mm.gflops / 1000,
      cublas_tflops: cublas,
      ratio: cublas ? mm.gflops / 1000 / cublas : null,
      goal: '>= 0.85',
    };
  }
  for (const [o, i] of [
    [4096, 4096],
    [14336, 4096],
  ]) {
    for (const [dt, label] of [
      ['float32', 'fp32'],
      ['bfloat16', 'bf16 W'],
    ] as const) {
      const r = find(`weight norm ${label}`, `${o}x${i} r16`);
      if (!r) continue;
      const bytes = o! * i! * (dt === 'float32' ? 4 : 2);
      const floorMs = torch?.copy_TBps_rw ? bytes / (torch.copy_TBps_rw * 1e9) : undefined;
      const eager = torch?.weight_norm?.[`${o}x${i}_r16_${dt}`]?.torch_ms;
      goals[`weight_norm_${o}x${i}_${dt}`] = {
        ours_ms: r.medianMs,
        config: r.notes,
        floor_ms: floorMs,
        ratio_to_floor: floorMs ? r.medianMs / floorMs : null,
        torch_eager_ms: eager,
        speedup_vs_torch_eager: eager ? eager / r.medianMs : null,
        goal: '<= 1.3x floor',
      };
    }
  }
  for (const T of [1, 64, 2048]) {
    const shape = `4096x4096 r16 T${T}`;
    const lora = find('LoRA linear forward', shape);
    const cached = find('DoRA linear forward (cached norm)', shape);
    const uncached = find('DoRA linear forward (uncached)', shape);
    if (lora && cached && uncached) {
      goals[`dora_linear_T${T}`] = {
        lora_ms: lora.medianMs,
        cached_ratio: cached.medianMs / lora.medianMs,
        uncached_ratio: uncached.medianMs / lora.medianMs,
        goal: 'cached <= 1.03, uncached <= 1.10',
        torch_fp32_lora_ms: torch?.layer_4096_r16?.[`lora_float32_T${T}_eval_ms`],
        torch_fp32_dora_ms: torch?.layer_4096_r16?.[`dora_float32_T${T}_eval_ms`],
        torch_fp32_dora_cached_ms: torch?.layer_4096_r16?.[`dora_float32_cached_T${T}_eval_ms`],
      };
    }
  }
  const disp = rows.find((r) => r.name === 'dispatch host cost (record)');
  const nativeDispatch = rows.find((r) => r.name === 'native call dispatchWorkgroups');
  const nativeBind = rows.find((r) => r.name === 'native call setBindGroup (static)');
  if (disp) {
    goals.dispatch_host_us = {
      ours_us: disp.medianMs * 1000,
      native_dispatchWorkgroups_us: nativeDispatch ? nativeDispatch.medianMs * 1000 : undefined,
      native_setBindGroup_us: nativeBind ? nativeBind.medianMs * 1000 : undefined,
      goal: '<= 2',
    };
  }
  const summary = { gpu: torch?.gpu, webgpu_device: [...new Set(devices)], goals, rows };
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
  console.log(JSON.stringify(goals, null, 1));
}

if (section === 'summary') summarize(target);
else if (section === 'help' || !target)
  console.log('usage: bench.mjs <matmul|weightnorm|dispatch|dora> <out.json> [--small] [--torch t.json] | summary <dir>');
else await runSection();
