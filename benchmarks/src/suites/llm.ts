/**
 * Text generation speed on the CPU backend: a Llama-shaped model with random weights (built here, never
 * shipped), prefill and decode tokens/s on 1 and 2 threads against the memory-bandwidth floor measured
 * in the same run (weight bytes ÷ the read bandwidth of one streaming sum over as many bytes, on the same
 * threads: the time a decode step would take if it only had to read every weight once). Then DoRA (with
 * DoraCaching) vs LoRA vs merged decode time on the same model. Machine, date and load average are in
 * the notes: numbers taken while other work shares the machine are marked by a high load average.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { type Backend, ops, Random, tensor, tidy } from '@dorajs/core';
import { type CausalLM, createModel, generate } from '@dorajs/models';
import { DoraCaching, getPeftModel, LoraConfig } from '@dorajs/peft';
import type { BenchResult, BenchSuite } from '../harness.js';
import type { LlamaSize } from './model-load.js';

type Size = LlamaSize;

const FULL: Size = { vocab: 32000, hidden: 768, intermediate: 2048, layers: 8, heads: 12, kvHeads: 4 };
const QUICK: Size = { vocab: 4000, hidden: 256, intermediate: 704, layers: 4, heads: 8, kvHeads: 4 };
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

const weightBytes = (model: CausalLM): number => model.parameters().reduce((s, p) => s + p.size * 4, 0);

/** Median ms of one streaming sum over `bytes` of float32 on `backend`: the read bandwidth floor. */
async function streamMs(backend: Backend, bytes: number): Promise<number> {
  const rows = Math.floor(bytes / 4 / 1024);
  const big = tensor(new Float32Array(rows * 1024).fill(1e-3), [rows, 1024], { backend });
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const s = tidy(() => ops.sum(big));
    await s.data();
    times.push(performance.now() - t0);
    s.dispose();
  }
  big.dispose();
  return median(times.slice(2));
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
  async run({ quick }) {
    const size = quick ? QUICK : FULL;
    const results: BenchResult[] = [];
    const shape = `llama h${size.hidden} i${size.intermediate} L${size.layers} v${size.vocab}, prompt ${PROMPT}, ${NEW_TOKENS} new`;
    const runs = quick ? 1 : 3;
    const machine = `${cpus()[0]?.model.trim() ?? 'cpu'}, ${availableParallelism()} cores, ${new Date().toISOString()}`;
    for (const threads of [1, 2]) {
      const backend = createCpuBackend({ threads });
      const model = llama(size, backend);
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
    // Adapters: the same model with r 16 on every linear layer; decode time per token.
    const adapterSize = quick ? QUICK : { ...FULL, vocab: 8000 };
    const backend = createCpuBackend({ threads: 2 });
    const timings = new Map<string, number>();
    for (const variant of ['base', 'lora', 'dora', 'merged'] as const) {
      const model = llama(adapterSize, backend);
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
      const { decodeMs } = await DoraCaching.scope(() => speed(target, adapterSize.vocab, runs));
      timings.set(variant, decodeMs);
      model.dispose();
    }
    backend.dispose();
    const adapterShape = `llama h${adapterSize.hidden} L${adapterSize.layers} v${adapterSize.vocab}, r 16 on every linear layer`;
    const notes = `${machine}; load average ${loadavg()[0]!.toFixed(2)}`;
    const row = (name: string, variant: string, to: string, goal: string): BenchResult => ({
      name,
      backend: 'cpu',
      shape: adapterShape,
      medianMs: timings.get(variant)!,
      threads: 2,
      ratio: timings.get(to)! / timings.get(variant)!,
      ratioTo: `${to} (${goal})`,
      notes,
    });
    results.push(
      row('decode ms/token base', 'base', 'base', '1'),
      row('decode ms/token lora', 'lora', 'base', 'LoRA overhead'),
      row('decode ms/token dora (cached)', 'dora', 'lora', 'goal ≥ 0.95: DoRA ≤ +5% over LoRA'),
      row('decode ms/token merged', 'merged', 'base', 'goal 1: merged = base'),
    );
    return results;
  },
};

export default suite;
