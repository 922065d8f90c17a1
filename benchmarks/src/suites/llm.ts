/**
 * Text generation speed on the CPU backend: a Llama-shaped model with random weights (built here, never
 * shipped), prefill and decode tokens/s on 1 and 2 threads against the memory-bandwidth floor measured
 * in the same run (weight bytes ÷ the read bandwidth of one streaming sum over as many bytes, on the same
 * threads: the time a decode step would take if it only had to read every weight once). Then DoRA (with
 * DoraCaching) vs LoRA vs merged decode time on the same model. Machine, date and load average are in
 * the notes: numbers taken while other work shares the machine are marked by a high load average.
 *
 * `--size 1b`: the base rows on Llama-3.2-1B's shape (1.24B parameters, tied head) with bfloat16 weights as
 * the checkpoint ships them — written to a temporary folder and loaded with `keepWidth`, 2.5 GB in the wasm
 * heap (float32 would not fit its 4 GiB). Its floor streams min(weights, 1 GiB) of float32 and scales to the
 * weight bytes. The adapter rows stay on the default size. Takes minutes and ~8 GB of memory: run it alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, BYTES_PER_ELEMENT, ops, Random, tensor, tidy } from '@dorajs/core';
import { type CausalLM, createModel, generate } from '@dorajs/models';
import { loadModel } from '@dorajs/models/node';
import { DoraCaching, getPeftModel, LoraConfig } from '@dorajs/peft';
import type { BenchResult, BenchSuite } from '../harness.js';
import { type LlamaSize, writeCheckpoint } from './model-load.js';

type Size = LlamaSize;

const FULL: Size = { vocab: 32000, hidden: 768, intermediate: 2048, layers: 8, heads: 12, kvHeads: 4 };
const QUICK: Size = { vocab: 4000, hidden: 256, intermediate: 704, layers: 4, heads: 8, kvHeads: 4 };
/** Llama-3.2-1B (config.json of meta-llama/Llama-3.2-1B): bfloat16 weights, `--size 1b`. */
export const LLAMA_1B: Size = { vocab: 128256, hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, tied: true };
const SIZES: Readonly<Record<string, Size>> = { '1b': LLAMA_1B };
/** The floor's streaming pass reads at most this many bytes (and is scaled to the weight bytes). */
const MAX_STREAM_BYTES = 2 ** 30;
const PROMPT = 64;
const NEW_TOKENS = 32;

function llama(size: Size, backend: Backend): CausalLM {
  return createModel(
    {
      model_type: 'llama',
      vocab_size: size.vocab,
      hidden_size: size.hidden,
      intermediate_size: size.intermediate,
      num_hidden_layers: size.layers,
      num_attention_heads: size.heads,
      num_key_value_heads: size.kvHeads,
      max_position_embeddings: 2048,
    },
    { backend, random: new Random(1) },
  ).eval() as CausalLM;
}

/** Bytes of the weights as they are held (bfloat16 ones count 2). */
const weightBytes = (model: CausalLM): number =>
  [...new Set(model.parameters())].reduce((s, p) => s + p.size * BYTES_PER_ELEMENT[p.dtype], 0);

/**
 * Median ms of one streaming sum over `bytes` of float32 on `backend`: the read bandwidth floor. Each
 * 4 KiB row is summed on its own (then the row sums, 1/1024 of the bytes), so the backend spreads the rows
 * over all its threads — a sum over every axis at once is one row, which the CPU backend runs on one thread.
 */
async function streamMs(backend: Backend, bytes: number): Promise<number> {
  const streamed = Math.min(bytes, MAX_STREAM_BYTES);
  const rows = Math.floor(streamed / 4 / 1024);
  const big = tensor(new Float32Array(rows * 1024).fill(1e-3), [rows, 1024], { backend });
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const s = tidy(() => ops.sum(ops.sum(big, -1)));
    await s.data();
    times.push(performance.now() - t0);
    s.dispose();
  }
  big.dispose();
  return (median(times.slice(2)) * bytes) / (rows * 1024 * 4);
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const prompt = (vocab: number): number[] => Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % vocab);

/** Median prefill and per-token decode ms over `runs` generations (greedy, NEW_TOKENS each). */
async function speed(model: Parameters<typeof generate>[0], vocab: number, runs: number): Promise<{ prefillMs: number; decodeMs: number }> {
  const prefill: number[] = [];
  const decode: number[] = [];
  for (let r = 0; r < runs + 1; r++) {
    const out = await generate(model, [prompt(vocab)], { maxNewTokens: NEW_TOKENS });
    if (r === 0) continue; // warm-up
    prefill.push(out.prefillMs);
    decode.push(out.decodeMs / out.decodeSteps);
  }
  return { prefillMs: median(prefill), decodeMs: median(decode) };
}

const suite: BenchSuite = {
  name: 'llm',
  async run({ quick, size: sizeName }) {
    if (sizeName !== undefined && !SIZES[sizeName]) {
      throw new Error(`llm: unknown --size '${sizeName}' (sizes: ${Object.keys(SIZES).join(', ')})`);
    }
    const size = sizeName ? SIZES[sizeName]! : quick ? QUICK : FULL;
    // The 1B shape is loaded from a bfloat16 checkpoint written once, kept 2 bytes wide.
    const folder = sizeName ? await mkdtemp(join(tmpdir(), 'dorajs-llm-bench-')) : null;
    if (folder) await writeCheckpoint(folder, size, 'BF16');
    const build = async (backend: Backend): Promise<CausalLM> =>
      folder ? (await loadModel(folder, { backend, keepWidth: true })).model.eval() : llama(size, backend);
    try {
      return [...(await baseRows(size, quick, build)), ...(await adapterRows(quick))];
    } finally {
      if (folder) await rm(folder, { recursive: true, force: true });
    }
  },
};

const machineLine = (): string => `${cpus()[0]?.model.trim() ?? 'cpu'}, ${availableParallelism()} cores, ${new Date().toISOString()}`;

/** Prefill and decode tokens/s against the bandwidth floor, on 1 and 2 threads. */
async function baseRows(size: Size, quick: boolean, build: (backend: Backend) => Promise<CausalLM>): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const shape = `llama h${size.hidden} i${size.intermediate} L${size.layers} v${size.vocab}${size === LLAMA_1B ? ' tied, bf16 weights' : ''}, prompt ${PROMPT}, ${NEW_TOKENS} new`;
  const runs = quick ? 1 : 3;
  const machine = machineLine();
  for (const threads of [1, 2]) {
    const backend = createCpuBackend({ threads });
    const model = await build(backend);
    const bytes = weightBytes(model);
    const load0 = loadavg()[0]!;
    const floorMs = await streamMs(backend, bytes);
    const { prefillMs, decodeMs } = await speed(model, size.vocab, runs);
    const notes = `${machine}; weights ${(bytes / 2 ** 20).toFixed(0)} MiB; load average ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`;
    results.push(
      {
        name: 'prefill tokens/s',
        backend: 'cpu',
        shape,
        medianMs: prefillMs,
        threads,
        ratio: (PROMPT * 1000) / prefillMs,
        ratioTo: 'tokens per second',
        notes,
      },
      {
        name: 'bandwidth floor',
        backend: 'cpu',
        shape,
        medianMs: floorMs,
        threads,
        gbps: bytes / 1e6 / floorMs,
        notes: `one streaming sum over the weight bytes; ${notes}`,
      },
      {
        name: 'decode tokens/s',
        backend: 'cpu',
        shape,
        medianMs: decodeMs,
        threads,
        ratio: floorMs / decodeMs,
        ratioTo: 'bandwidth floor (1 = at the floor; goal ≥ 0.6)',
        notes: `${(1000 / decodeMs).toFixed(1)} tokens/s; floor ${(1000 / floorMs).toFixed(1)} tokens/s; ${notes}`,
      },
    );
    model.dispose();
    backend.dispose();
  }
  return results;
}

/** Measured rounds of the adapter rows (each variant once per round, after ADAPTER_WARMUP rounds). */
const ADAPTER_ROUNDS = { quick: 15, full: 5 };
/** Unmeasured rounds first: DoRA's first generation after one warm-up still ran ~1.6x its steady time. */
const ADAPTER_WARMUP = 2;

/**
 * DoRA (cached) vs LoRA vs merged decode time per token, r 16 on every linear layer. All four models are
 * built and warmed up (two generations each) first, then measured in interleaved rounds (order rotated
 * each round) and the median taken: measured one after another, the variant whose code ran least so far
 * pays the JIT warm-up and whatever load the machine had at that moment (a quick run once put DoRA at
 * 1.38× LoRA that way). A row's ratio is the median of its per-round ratios (both variants timed in the
 * same round, so load drift between rounds cancels).
 */
async function adapterRows(quick: boolean): Promise<BenchResult[]> {
  const rounds = quick ? ADAPTER_ROUNDS.quick : ADAPTER_ROUNDS.full;
  const machine = machineLine();
  const adapterSize = quick ? QUICK : { ...FULL, vocab: 8000 };
  const backend = createCpuBackend({ threads: 2 });
  const variants = ['base', 'lora', 'dora', 'merged'] as const;
  const models: CausalLM[] = [];
  const targets = new Map<string, Parameters<typeof generate>[0]>();
  for (const variant of variants) {
    const model = llama(adapterSize, backend);
    models.push(model);
    let target: Parameters<typeof generate>[0] = model;
    if (variant !== 'base') {
      const config = new LoraConfig({
        r: 16,
        loraAlpha: 32,
        useDora: variant !== 'lora',
        initLoraWeights: false,
        targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      });
      const peft = await getPeftModel(model, config, 'default', { random: new Random(2) });
      peft.eval();
      target = variant === 'merged' ? await peft.mergeAndUnload() : peft;
    }
    targets.set(variant, target);
  }
  const samples = new Map<string, number[]>(variants.map((v) => [v, []]));
  await DoraCaching.scope(async () => {
    for (let round = -ADAPTER_WARMUP; round < rounds; round++) {
      const shift = Math.max(round, 0) % variants.length;
      for (const variant of [...variants.slice(shift), ...variants.slice(0, shift)]) {
        const out = await generate(targets.get(variant)!, [prompt(adapterSize.vocab)], { maxNewTokens: NEW_TOKENS });
        if (round >= 0) samples.get(variant)!.push(out.decodeMs / out.decodeSteps);
      }
    }
  });
  const timings = new Map<string, number>(variants.map((v) => [v, median(samples.get(v)!)]));
  for (const model of models) model.dispose();
  backend.dispose();
  const adapterShape = `llama h${adapterSize.hidden} L${adapterSize.layers} v${adapterSize.vocab}, r 16 on every linear layer`;
  const notes = `${machine}; median of ${rounds} interleaved rounds (ratio: median per-round ratio); load average ${loadavg()[0]!.toFixed(2)}`;
  const row = (name: string, variant: string, to: string, goal: string): BenchResult => ({
    name,
    backend: 'cpu',
    shape: adapterShape,
    medianMs: timings.get(variant)!,
    threads: 2,
    ratio: median(samples.get(to)!.map((t, i) => t / samples.get(variant)![i]!)),
    ratioTo: `${to} (${goal})`,
    notes,
  });
  return [
    row('decode ms/token base', 'base', 'base', '1'),
    row('decode ms/token lora', 'lora', 'base', 'LoRA overhead'),
    row('decode ms/token dora (cached)', 'dora', 'lora', 'goal ≥ 0.95: DoRA ≤ +5% over LoRA'),
    row('decode ms/token merged', 'merged', 'base', 'goal 1: merged = base'),
  ];
}

export default suite;
