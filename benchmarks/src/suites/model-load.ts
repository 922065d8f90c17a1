/**
 * Loading a Hugging Face folder with @dorajs/models: a random Llama of ~100M parameters (~10M in quick
 * runs) written as F32 and as BF16, loaded onto the CPU backend. Reports load time and the high-water
 * marks of RSS and ArrayBuffer memory above the level before loading, sampled while it runs — a
 * streamed load should peak near one copy of the float32 weights plus one tensor in flight.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { f32ToBf16 } from '@dorajs/core';
import { loadModel } from '@dorajs/models/node';
import { gbpsOf, timeIt, type BenchResult, type BenchSuite } from '../harness.js';

/** The shape of a Llama-like model (shared with the llm suite). */
export interface LlamaSize {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** lm_head shares embed_tokens' weight (not written). */
  tied?: boolean;
}

export const FULL: LlamaSize = { vocab: 32000, hidden: 768, intermediate: 2048, layers: 8, heads: 12, kvHeads: 4 };
export const QUICK: LlamaSize = { vocab: 8000, hidden: 256, intermediate: 704, layers: 8, heads: 8, kvHeads: 4 };

/** Names and shapes of a Llama checkpoint, as transformers writes them. */
export function llamaTensors(s: LlamaSize): [string, number[]][] {
  const d = s.hidden / s.heads;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [s.vocab, s.hidden]]];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [`${p}self_attn.q_proj.weight`, [s.heads * d, s.hidden]],
      [`${p}self_attn.k_proj.weight`, [s.kvHeads * d, s.hidden]],
      [`${p}self_attn.v_proj.weight`, [s.kvHeads * d, s.hidden]],
      [`${p}self_attn.o_proj.weight`, [s.hidden, s.heads * d]],
      [`${p}mlp.gate_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}mlp.up_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}mlp.down_proj.weight`, [s.hidden, s.intermediate]],
      [`${p}input_layernorm.weight`, [s.hidden]],
      [`${p}post_attention_layernorm.weight`, [s.hidden]],
    );
  }
  out.push(['model.norm.weight', [s.hidden]]);
  if (!s.tied) out.push(['lm_head.weight', [s.vocab, s.hidden]]);
  return out;
}

/** config.json of a Llama checkpoint of size `s`. */
export function llamaConfig(s: LlamaSize): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    rope_parameters: { rope_type: 'default', rope_theta: 10000 },
    tie_word_embeddings: s.tied ?? false,
  };
}

/**
 * A random Llama checkpoint of size `s` (model.safetensors + config.json), written tensor by tensor a million
 * values at a time, so a 1B-shaped one (2.5 GB in bf16) never sits in memory whole. Values: small uniform
 * ones from an LCG seeded per tensor — the numbers do not matter, only the bytes moved.
 */
export async function writeCheckpoint(dir: string, s: LlamaSize, dtype: 'F32' | 'BF16'): Promise<{ params: number; bytes: number }> {
  const tensors = llamaTensors(s);
  const width = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  let params = 0;
  for (const [key, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[key] = { dtype, shape, data_offsets: [offset, offset + n * width] };
    offset += n * width;
    params += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const file = await open(join(dir, 'model.safetensors'), 'w');
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    await file.write(prefix);
    await file.write(json);
    const CHUNK = 1 << 20;
    const values = new Float32Array(CHUNK);
    const bits = new Uint16Array(CHUNK);
    for (const [i, [, shape]] of tensors.entries()) {
      const n = shape.reduce((a, b) => a * b, 1);
      let state = (i + 1) >>> 0;
      for (let at = 0; at < n; at += CHUNK) {
        const m = Math.min(CHUNK, n - at);
        for (let j = 0; j < m; j++) {
          state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
          values[j] = (state / 2 ** 32 - 0.5) * 0.04;
        }
        if (dtype === 'F32') await file.write(new Uint8Array(values.buffer, 0, 4 * m));
        else {
          for (let j = 0; j < m; j++) bits[j] = f32ToBf16(values[j]!);
          await file.write(new Uint8Array(bits.buffer, 0, 2 * m));
        }
      }
    }
  } finally {
    await file.close();
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(llamaConfig(s), null, 2));
  return { params, bytes: params * width };
}

interface Memory {
  /** High-water marks above the level before loading. */
  peakRss: number;
  peakArrayBuffers: number;
  /** What the loaded model keeps, after a garbage collection. */
  keptArrayBuffers: number;
}

/**
 * Measures one load in a fresh Node process: this one has just written the checkpoint and has loaded it
 * for timing, and V8 may hold on to some of that (or free it mid-load) which would skew a baseline.
 * The child samples every 2 ms while the load runs.
 */
const CHILD = `
const [dir, modelsUrl, cpuUrl] = process.argv.slice(1);
const { loadModel } = await import(modelsUrl);
const { createCpuBackend } = await import(cpuUrl);
const backend = createCpuBackend();
gc();
const start = process.memoryUsage();
const peak = { rss: start.rss, arrayBuffers: start.arrayBuffers };
const sample = () => {
  const m = process.memoryUsage();
  peak.rss = Math.max(peak.rss, m.rss);
  peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
};
const timer = setInterval(sample, 2);
const { model } = await loadModel(dir, { backend });
sample();
clearInterval(timer);
gc();
const after = process.memoryUsage();
console.log(JSON.stringify({
  peakRss: peak.rss - start.rss,
  peakArrayBuffers: peak.arrayBuffers - start.arrayBuffers,
  keptArrayBuffers: after.arrayBuffers - start.arrayBuffers,
}));
model.dispose();
`;

async function measureLoadMemory(dir: string): Promise<Memory> {
  const args = [
    '--expose-gc',
    '--input-type=module',
    '-e',
    CHILD,
    dir,
    import.meta.resolve('@dorajs/models/node'),
    import.meta.resolve('@dorajs/backend-cpu'),
  ];
  const { stdout } = await run(process.execPath, args);
  return JSON.parse(stdout) as Memory;
}

function run(command: string, args: string[]): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`memory probe failed: ${stderr || error.message}`));
      else resolve({ stdout });
    });
  });
}

const MIB = 2 ** 20;
const mib = (bytes: number): string => `${(bytes / MIB).toFixed(0)} MiB`;

const suite: BenchSuite = {
  name: 'model-load',
  async run({ quick }) {
    const size = quick ? QUICK : FULL;
    const results: BenchResult[] = [];
    for (const dtype of ['F32', 'BF16'] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'dorajs-bench-load-'));
      try {
        const { params, bytes } = await writeCheckpoint(dir, size, dtype);
        const backend = createCpuBackend();
        const memory = await measureLoadMemory(dir);
        const timing = await timeIt(
          async () => {
            const { model } = await loadModel(dir, { backend });
            model.dispose();
          },
          { warmup: 0, iters: 3 },
        );
        results.push({
          name: `load llama ${dtype.toLowerCase()}`,
          backend: backend.name,
          shape: `${(params / 1e6).toFixed(1)}M params (${size.layers}L h${size.hidden} v${size.vocab}), ${mib(bytes)} file`,
          medianMs: timing.medianMs,
          gbps: gbpsOf(bytes, timing.medianMs),
          threads: 1,
          notes:
            `while loading: peak +${mib(memory.peakArrayBuffers)} ArrayBuffers, +${mib(memory.peakRss)} RSS; ` +
            `the loaded model keeps +${mib(memory.keptArrayBuffers)} (float32 weights ${mib(params * 4)}); page cache warm`,
        });
        backend.dispose();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    return results;
  },
};
export default suite;
