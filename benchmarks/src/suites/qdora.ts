/**
 * QDoRA on backend-cpu (docs/qdora.md): one training step (forward, backward, AdamW) of DoRA on a
 * Llama-shaped model whose seven projections are NF4 (bitsandbytes, block 64, double-quantized absmax),
 * against the same step on the bf16 base — peak bytes of live tensors, weights included (goal ≤ 0.4×) —
 * and against QLoRA (LoRA on the same NF4 base) in CPU time (goal ≤ +15%). Embeddings and lm_head are
 * bf16 in every contender (transformers never quantizes them). Adapters r 16 on q/k/v/o/gate/up/down,
 * dropout 0. The three contenders' steps alternate, so a load change on a shared machine hits each alike.
 *
 * Then the seed's table: `dora finetune --quantize nf4` with and without DoRA (runTextFinetune, the CLI's
 * code path) on a Llama-shaped bf16 checkpoint written to a temporary folder with the byte-level BPE tokenizer
 * of fixtures/tokenizer — train_runtime, train_samples_per_second, train_steps_per_second as transformers'
 * Trainer reports them. PEFT's example settings (r 8, alpha 16, dropout 0.05, AdamW lr 3e-4, linear schedule)
 * with fewer steps and shorter texts. Dropout 0.05 puts DoRA on PEFT's dropout form, which runs the base
 * layer a second time on the dropped-out input (x̃·Wᵀ and its dY·W): QDoRA's finetune step costs two base
 * matmuls where QLoRA's costs one, on top of the weight norm — the step rows above use dropout 0.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { AdamW, type Backend, backward, Embedding, Linear, noGrad, ops, quantizeLinears, Random, tensor, tidy } from '@dorajs/core';
import { createModel } from '@dorajs/models';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import { runTextFinetune } from '@dorajs/train';
import { type BenchResult, type BenchSuite, median, timeIt } from '../harness.js';
import { type LlamaSize, writeCheckpoint } from './model-load.js';
import { cpuMs, MiB, trackMemory } from './train-memory.js';

interface Shape {
  hidden: number;
  inter: number;
  layers: number;
  heads: number;
  kv: number;
  vocab: number;
  seq: number;
}

type Kind = 'bf16-dora' | 'nf4-dora' | 'nf4-lora';

/** Linear and Embedding weights rounded to bfloat16 and frozen (what loadModel keepWidth holds). */
function toBf16(model: ReturnType<typeof createModel>): void {
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Embedding)) continue;
    const bf = noGrad(() => ops.cast(m.weight, 'bfloat16'));
    m.weight.assign(bf, { changeDtype: true });
    m.weight.requiresGrad = false;
    bf.dispose();
  }
}

async function contender(kind: Kind, s: Shape) {
  const tracked = trackMemory(createCpuBackend());
  const backend: Backend = tracked.backend;
  const config = {
    model_type: 'llama',
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.inter,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kv,
    max_position_embeddings: s.seq,
    tie_word_embeddings: false,
  };
  const model = createModel(config, { backend, random: new Random(1) });
  if (kind !== 'bf16-dora') await quantizeLinears(model, { format: 'nf4', doubleQuant: true });
  toBf16(model);
  const targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const useDora = kind !== 'nf4-lora';
  const peft = await getPeftModel(model, new LoraConfig({ r: 16, loraAlpha: 32, targetModules: targets, useDora }), 'default', {
    random: new Random(2),
  });
  peft.train();
  const rng = new Random(3);
  const ids = Int32Array.from({ length: s.seq }, () => rng.nextU32() % s.vocab);
  const input = tensor(ids, [1, s.seq], { backend });
  const labels = new Int32Array(s.seq).fill(-100);
  labels.set(ids.subarray(1));
  const optimizer = new AdamW(
    peft.parameters().filter((p) => p.requiresGrad),
    { lr: 1e-4 },
  );
  const step = async () => {
    const loss = tidy(() => {
      const l = ops.crossEntropy(ops.reshape(peft.forward(input), [-1, s.vocab]), labels);
      backward(l);
      return ops.detach(l);
    });
    await loss.data();
    loss.dispose();
    optimizer.step();
    optimizer.zeroGrad();
  };
  await step(); // AdamW makes its moments on the first step
  tracked.resetPeak();
  const samples: number[] = [];
  const cpuSamples: number[] = [];
  return {
    kind,
    tracked,
    samples,
    cpuSamples,
    async run() {
      const c0 = cpuMs();
      samples.push((await timeIt(step, { warmup: 0, iters: 1 })).medianMs);
      cpuSamples.push(cpuMs() - c0);
    },
    dispose() {
      optimizer.dispose();
      input.dispose();
      peft.dispose();
      backend.dispose();
    },
  };
}

const suite: BenchSuite = {
  name: 'qdora',
  async run({ quick }) {
    // The step rows first (their contenders disposed), then the finetune table.
    const steps = await stepRows(quick);
    return [...steps, ...(await finetuneRows(quick))];
  },
};

async function stepRows(quick: boolean): Promise<BenchResult[]> {
  const s: Shape = quick
    ? { hidden: 512, inter: 1376, layers: 2, heads: 8, kv: 4, vocab: 1024, seq: 32 }
    : { hidden: 1024, inter: 2752, layers: 4, heads: 16, kv: 4, vocab: 2048, seq: 128 };
  const shape = `llama h${s.hidden} i${s.inter} L${s.layers} v${s.vocab} x 1x${s.seq} r16`;
  const all = [await contender('bf16-dora', s), await contender('nf4-dora', s), await contender('nf4-lora', s)];
  try {
    for (let i = 0; i < (quick ? 3 : 5); i++) for (const c of all) await c.run();
    const [bf16, qdora, qlora] = all.map((c) => ({
      ms: median(c.samples),
      cpuMs: median(c.cpuSamples),
      peakMiB: c.tracked.peak() / MiB,
    })) as [PairLike, PairLike, PairLike];
    const memRatio = qdora.peakMiB / bf16.peakMiB;
    const timeDelta = (qdora.cpuMs / qlora.cpuMs - 1) * 100;
    const row = (name: string, r: PairLike, extra: Partial<BenchResult>, notes: string): BenchResult => ({
      name,
      backend: 'cpu',
      shape,
      medianMs: r.cpuMs,
      threads: 1,
      ...extra,
      notes: `${notes}; median CPU ms per step (wall ${r.ms.toFixed(0)} ms); peak ${r.peakMiB.toFixed(1)} MiB of live tensors`,
    });
    return [
      row('step-bf16-dora', bf16, {}, 'DoRA on the bf16 base'),
      row(
        'step-nf4-dora',
        qdora,
        { ratio: bf16.peakMiB / qdora.peakMiB, ratioTo: 'bf16 peak memory' },
        `QDoRA (nf4 + double quant); peak memory ${memRatio.toFixed(2)}× the bf16 base's (goal ≤ 0.4×); vs QLoRA ${timeDelta >= 0 ? '+' : ''}${timeDelta.toFixed(1)}% CPU time (goal ≤ +15%)`,
      ),
      row('step-nf4-lora', qlora, { ratio: qdora.cpuMs / qlora.cpuMs, ratioTo: 'QDoRA time' }, 'QLoRA on the same nf4 base'),
    ];
  } finally {
    for (const c of all) c.dispose();
  }
}

const TOKENIZER = join(dirname(fileURLToPath(import.meta.url)), '../../../fixtures/tokenizer/byte-bpe');

/** Short English-like lines (byte-level tokens: ~1 per character). */
function corpus(lines: number, words: number): string {
  const vocab = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ate', 'bone', 'bird', 'sang', 'in', 'tree', 'sun', 'is', 'hot'];
  const rng = new Random(9);
  return Array.from({ length: lines }, () =>
    JSON.stringify({ text: Array.from({ length: words }, () => vocab[rng.nextU32() % vocab.length]).join(' ') }),
  ).join('\n');
}

/** The seed's table: `dora finetune --quantize nf4` (QDoRA) and `--quantize nf4 --no-dora` (QLoRA), CPU backend. */
export async function finetuneRows(quick: boolean): Promise<BenchResult[]> {
  const size: LlamaSize = quick
    ? { vocab: 320, hidden: 256, intermediate: 688, layers: 2, heads: 4, kvHeads: 2 }
    : { vocab: 320, hidden: 512, intermediate: 1376, layers: 4, heads: 8, kvHeads: 4 };
  const h = quick
    ? { maxSteps: 4, batchSize: 2, gradAccum: 2, cutoffLen: 64 }
    : { maxSteps: 6, batchSize: 2, gradAccum: 2, cutoffLen: 128 };
  const dir = await mkdtemp(join(tmpdir(), 'dorajs-qdora-finetune-'));
  try {
    const model = join(dir, 'model');
    await mkdir(model);
    await writeCheckpoint(model, size, 'BF16');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(TOKENIZER, f), join(model, f));
    const data = join(dir, 'train.jsonl');
    await writeFile(data, corpus(h.maxSteps * h.batchSize * h.gradAccum, quick ? 14 : 28));
    const shape = `llama h${size.hidden} i${size.intermediate} L${size.layers} bf16 ckpt, ${h.maxSteps} steps x ${h.batchSize} x ${h.gradAccum} accum, ≤${h.cutoffLen} tokens, r8 on 7 projections`;
    const runs: { useDora: boolean; metrics: Readonly<Record<string, number>>; load: number }[] = [];
    for (const useDora of [true, false]) {
      const load = loadavg()[0]!;
      const result = await runTextFinetune({
        model,
        data,
        backend: createCpuBackend(),
        useDora,
        quantize: 'nf4',
        ...h,
        valSetSize: 0,
        log: () => {},
      });
      runs.push({ useDora, metrics: result.metrics, load });
    }
    const [qdora, qlora] = runs as [(typeof runs)[0], (typeof runs)[0]];
    return runs.map((r) => {
      const m = r.metrics;
      const cmd = `dora finetune --quantize nf4${r.useDora ? '' : ' --no-dora'}`;
      return {
        name: `finetune-nf4-${r.useDora ? 'dora' : 'lora'}`,
        backend: 'cpu',
        shape,
        medianMs: m['train_runtime']! * 1000,
        threads: 1,
        ...(r.useDora
          ? { ratio: qdora.metrics['train_samples_per_second']! / qlora.metrics['train_samples_per_second']!, ratioTo: 'QLoRA samples/s' }
          : {}),
        notes: `${cmd} (${r.useDora ? 'QDoRA' : 'QLoRA'}): train_runtime ${m['train_runtime']} s, train_samples_per_second ${m['train_samples_per_second']}, train_steps_per_second ${m['train_steps_per_second']}, train_loss ${m['train_loss']}; median ms = train_runtime; load average ${r.load.toFixed(2)} at start`,
      };
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface PairLike {
  ms: number;
  cpuMs: number;
  peakMiB: number;
}

export default suite;
