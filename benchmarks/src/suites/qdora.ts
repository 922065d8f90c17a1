/**
 * QDoRA on backend-cpu (docs/qdora.md): one training step (forward, backward, AdamW) of DoRA on a
 * Llama-shaped model whose seven projections are NF4 (bitsandbytes, block 64, double-quantized absmax),
 * against the same step on the bf16 base — peak bytes of live tensors, weights included (goal ≤ 0.4×) —
 * and against QLoRA (LoRA on the same NF4 base) in CPU time (goal ≤ +15%). Embeddings and lm_head are
 * bf16 in every contender (transformers never quantizes them). Adapters r 16 on q/k/v/o/gate/up/down,
 * dropout 0. The three contenders' steps alternate, so a load change on a shared machine hits each alike.
 */
import { createCpuBackend } from '@dorajs/backend-cpu';
import { AdamW, type Backend, backward, Embedding, Linear, noGrad, ops, quantizeLinears, Random, tensor, tidy } from '@dorajs/core';
import { createModel } from '@dorajs/models';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import { type BenchResult, type BenchSuite, median, timeIt } from '../harness.js';
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
  },
};

interface PairLike {
  ms: number;
  cpuMs: number;
  peakMiB: number;
}

export default suite;
