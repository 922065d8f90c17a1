/**
 * QDoRA on backend-cpu (docs/qdora.md): one training step (forward, backward, AdamW) of DoRA on a
 * Llama-shaped model whose seven projections are NF4 (bitsandbytes, block 64, double-quantized absmax),
 * against the same step on the bf16 base — peak bytes of live tensors, weights included (goal ≤ 0.4×) —
 * and against QLoRA (LoRA on the same NF4 base) in CPU time (goal ≤ +15%). Embeddings and lm_head are
 * bf16 in every contender (transformers never quantizes them). Adapters r 16 on q/k/v/o/gate/up/down,
 * dropout 0. The three contenders' steps alternate, so a load change on a shared machine hits each alike.
 * Each shape is measured twice: as is, and with gradient checkpointing on in all three contenders
 * (`gc-` rows: `gradientCheckpointingEnable()`, what PEFT's prepare_model_for_kbit_training turns on for
 * QLoRA/QDoRA) — each decoder layer keeps only its input and runs again in backward; DoRA's norm is not
 * recomputed there (the forward's is reused). The goals are checked within each treatment.
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
import { watchHandles } from '@dorajs/backend-conformance';
import { createCpuBackend } from '@dorajs/backend-cpu';
import { AdamW, type Backend, backward, Embedding, Linear, noGrad, ops, quantizeLinears, Random, tensor, tidy } from '@dorajs/core';
import { createModel } from '@dorajs/models';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import { runTextFinetune } from '@dorajs/train';
import { type BenchResult, type BenchSuite, median, timeIt } from '../harness.js';
import { type LlamaSize, writeCheckpoint } from './model-load.js';
import { cpuMs, MiB } from './train-memory.js';

interface Shape {
  hidden: number;
  inter: number;
  layers: number;
  heads: number;
  kv: number;
  vocab: number;
  /** Sequence lengths measured on the same three models (batch 1). */
  seqs: number[];
  /** Row-name prefix: '' for the suite's original shape. */
  tag: string;
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

/** Bytes of live tensors by what they hold, at a step's high-water mark. */
interface Breakdown {
  /** The base model: quantized or bf16 projections, embeddings, lm_head, norms. */
  weights: number;
  /** LoRA A/B and DoRA magnitudes, their gradients, AdamW's two moments. */
  adapterState: number;
  /** Everything else the step holds: saved activations, backward temporaries, logits and loss. */
  activations: number;
}

/**
 * trackMemory plus what each live handle is: handles made before `markWeights()` are the base weights;
 * at the high-water mark of an armed step the live set is classified (adapter state by the handles the
 * parameters, their gradients and the optimizer's moments hold at that instant).
 */
function trackLive(inner: Backend) {
  const live = new Map<object, { bytes: number; weight: boolean }>();
  let current = 0;
  let peak = 0;
  let weightsPhase = true;
  let armed: { target: number; classify: () => Set<unknown> } | null = null;
  let breakdown: Breakdown | null = null;
  const snapshot = (adapter: Set<unknown>) => {
    const b: Breakdown = { weights: 0, adapterState: 0, activations: 0 };
    for (const [h, e] of live) {
      if (e.weight) b.weights += e.bytes;
      else if (adapter.has(h)) b.adapterState += e.bytes;
      else b.activations += e.bytes;
    }
    return b;
  };
  const backend = watchHandles(inner, {
    created(handle, bytes) {
      live.set(handle, { bytes, weight: weightsPhase });
      current += bytes;
      if (current > peak) peak = current;
      if (armed && current >= armed.target) {
        breakdown = snapshot(armed.classify());
        armed = null;
      }
    },
    released(handle) {
      const e = live.get(handle);
      if (e) {
        current -= e.bytes;
        live.delete(handle);
      }
    },
  });
  return {
    backend,
    peak: () => peak,
    current: () => current,
    resetPeak: () => {
      peak = current;
    },
    markWeights: () => {
      weightsPhase = false;
    },
    /** Classifies the live set the first time `current` reaches `target` (call `breakdown()` after). */
    arm: (target: number, classify: () => Set<unknown>) => {
      armed = { target, classify };
      breakdown = null;
    },
    breakdown: () => breakdown,
  };
}

async function contender(kind: Kind, s: Shape, checkpointing = false) {
  const tracked = trackLive(createCpuBackend());
  const backend: Backend = tracked.backend;
  const config = {
    model_type: 'llama',
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.inter,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kv,
    max_position_embeddings: Math.max(...s.seqs),
    tie_word_embeddings: false,
  };
  const model = createModel(config, { backend, random: new Random(1) });
  if (checkpointing) model.gradientCheckpointingEnable();
  if (kind !== 'bf16-dora') await quantizeLinears(model, { format: 'nf4', doubleQuant: true });
  toBf16(model);
  tracked.markWeights();
  const targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const useDora = kind !== 'nf4-lora';
  const peft = await getPeftModel(model, new LoraConfig({ r: 16, loraAlpha: 32, targetModules: targets, useDora }), 'default', {
    random: new Random(2),
  });
  peft.train();
  const trainable = peft.parameters().filter((p) => p.requiresGrad);
  const optimizer = new AdamW(trainable, { lr: 1e-4 });
  /** Handles of the adapter parameters, their gradients and AdamW's moments, now. */
  const adapterHandles = () => {
    const set = new Set<unknown>();
    for (const p of trainable) {
      set.add(p.info.data);
      if (p.grad) set.add(p.grad.info.data);
    }
    for (const st of optimizer.state.moments.values()) {
      set.add(st.m.info.data);
      set.add(st.v.info.data);
    }
    return set;
  };
  const inputs = new Map(
    s.seqs.map((seq) => {
      const rng = new Random(3);
      const ids = Int32Array.from({ length: seq }, () => rng.nextU32() % s.vocab);
      const labels = new Int32Array(seq).fill(-100);
      labels.set(ids.subarray(1));
      return [seq, { input: tensor(ids, [1, seq], { backend }), labels }] as const;
    }),
  );
  const step = async (seq: number) => {
    const { input, labels } = inputs.get(seq)!;
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
  await step(s.seqs[0]!); // AdamW makes its moments on the first step
  const samples = new Map<number, { ms: number[]; cpu: number[]; peak: number }>(s.seqs.map((q) => [q, { ms: [], cpu: [], peak: 0 }]));
  return {
    kind,
    checkpointing,
    tracked,
    async run(seq: number) {
      const r = samples.get(seq)!;
      tracked.resetPeak();
      const c0 = cpuMs();
      r.ms.push((await timeIt(() => step(seq), { warmup: 0, iters: 1 })).medianMs);
      r.cpu.push(cpuMs() - c0);
      r.peak = Math.max(r.peak, tracked.peak());
    },
    /** One more step, classifying the live tensors when it reaches the timed steps' peak. */
    async breakdown(seq: number): Promise<Breakdown | null> {
      tracked.arm(samples.get(seq)!.peak, adapterHandles);
      await step(seq);
      return tracked.breakdown();
    },
    result(seq: number) {
      const r = samples.get(seq)!;
      return { ms: median(r.ms), cpuMs: median(r.cpu), peakMiB: r.peak / MiB };
    },
    dispose() {
      optimizer.dispose();
      for (const { input } of inputs.values()) input.dispose();
      peft.dispose();
      backend.dispose();
    },
  };
}

const suite: BenchSuite = {
  name: 'qdora',
  async run({ quick }) {
    // The step rows first (their contenders disposed), then the finetune table.
    const original: Shape = quick
      ? { hidden: 512, inter: 1376, layers: 2, heads: 8, kv: 4, vocab: 1024, seqs: [32], tag: '' }
      : { hidden: 1024, inter: 2752, layers: 4, heads: 16, kv: 4, vocab: 2048, seqs: [128], tag: '' };
    // TinyLlama-1.1B's decoder layer (h2048 i5632, 32 heads, 4 KV heads) × 4 layers, short sequences: the
    // regime where weights dominate, as in real QDoRA use. Vocabulary as small as the original row's.
    const billion: Shape = quick
      ? { hidden: 1024, inter: 2752, layers: 2, heads: 16, kv: 4, vocab: 1024, seqs: [32], tag: '1b-' }
      : { hidden: 2048, inter: 5632, layers: 4, heads: 32, kv: 4, vocab: 2048, seqs: [64, 32], tag: '1b-' };
    const steps = [...(await stepRows(original, quick)), ...(await stepRows(billion, quick))];
    return [...steps, ...(await finetuneRows(quick))];
  },
};

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

function breakdownText(b: Breakdown | null): string {
  if (!b) return 'breakdown n/a (the extra step did not reach the timed peak)';
  return `at the peak: weights ${mib(b.weights)} + adapters/grads/AdamW ${mib(b.adapterState)} + activations/temporaries ${mib(b.activations)} MiB`;
}

async function stepRows(s: Shape, quick: boolean): Promise<BenchResult[]> {
  // The three contenders as they were, then the same three with gradient checkpointing (transformers'
  // gradient_checkpointing_enable(), which PEFT's prepare_model_for_kbit_training turns on for QLoRA/QDoRA).
  const kinds: Kind[] = ['bf16-dora', 'nf4-dora', 'nf4-lora'];
  const all = [];
  for (const gc of [false, true]) for (const k of kinds) all.push(await contender(k, s, gc));
  const rows: BenchResult[] = [];
  try {
    for (const seq of s.seqs) {
      const shape = `llama h${s.hidden} i${s.inter} L${s.layers} v${s.vocab} x 1x${seq} r16`;
      for (let i = 0; i < (quick ? 3 : 5); i++) for (const c of all) await c.run(seq);
      const results = all.map((c) => c.result(seq));
      const breakdowns: (Breakdown | null)[] = [];
      for (const c of all) breakdowns.push(await c.breakdown(seq));
      const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
      for (const gc of [false, true]) {
        const at = gc ? 3 : 0;
        const [bf16, qdora, qlora] = results.slice(at, at + 3) as [PairLike, PairLike, PairLike];
        const memRatio = qdora.peakMiB / bf16.peakMiB;
        const timeDelta = (qdora.cpuMs / qlora.cpuMs - 1) * 100;
        const plainBf16 = results[0]!;
        const row = (kind: Kind, i: number, extra: Partial<BenchResult>, notes: string): BenchResult => {
          const r = results[at + i]!;
          return {
            name: `step-${s.tag}${s.seqs.length > 1 ? `s${seq}-` : ''}${gc ? 'gc-' : ''}${kind}`,
            backend: 'cpu',
            shape,
            medianMs: r.cpuMs,
            threads: 1,
            ...extra,
            notes: `${notes}; median CPU ms per step (wall ${r.ms.toFixed(0)} ms); peak ${r.peakMiB.toFixed(1)} MiB of live tensors, ${breakdownText(breakdowns[at + i]!)}`,
          };
        };
        const ckpt = gc ? ', gradient checkpointing' : '';
        rows.push(
          row(
            'bf16-dora',
            0,
            {},
            `DoRA on the bf16 base${ckpt}${gc ? `; vs the same step without it: ${signed((bf16.cpuMs / plainBf16.cpuMs - 1) * 100)}% CPU time, ${(bf16.peakMiB / plainBf16.peakMiB).toFixed(2)}× the peak` : ''}`,
          ),
          row(
            'nf4-dora',
            1,
            { ratio: bf16.peakMiB / qdora.peakMiB, ratioTo: `bf16${gc ? ' (checkpointed)' : ''} peak memory` },
            `QDoRA (nf4 + double quant${ckpt}); peak memory ${memRatio.toFixed(2)}× the bf16 base's${gc ? ' (both checkpointed)' : ''} (goal ≤ 0.4×: ${met(memRatio <= 0.4)})${gc ? `, ${(qdora.peakMiB / plainBf16.peakMiB).toFixed(2)}× the plain bf16 step's` : ''}; vs QLoRA${ckpt} ${timeDelta >= 0 ? '+' : ''}${timeDelta.toFixed(1)}% CPU time (goal ≤ +15%: ${met(timeDelta <= 15)})`,
          ),
          row('nf4-lora', 2, { ratio: qdora.cpuMs / qlora.cpuMs, ratioTo: 'QDoRA time' }, `QLoRA on the same nf4 base${ckpt}`),
        );
      }
    }
    return rows;
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
