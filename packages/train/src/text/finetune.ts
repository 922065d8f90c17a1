/**
 * `dora finetune --model <hf folder> --data file.jsonl`: causal-LM fine-tuning of a Llama or GPT-2 folder
 * from @dorajs/models with a DoRA (or LoRA) adapter, as PEFT's examples/dora_finetuning/dora_finetuning.py
 * does (labels = input ids, pad = eos, AdamW with weight decay 0.01 and a linear schedule). The adapter
 * and the tokenizer files are written to `output`.
 */
import { ConfigError, QuantizedLinear, Random } from '@dorajs/core';
import { getPeftModel, LoraConfig } from '@dorajs/peft';
import {
  backendFor,
  type FinetuneOptions,
  describeTargets,
  parseTargetModules,
  resolveHyperParameters,
  type ResolvedHyperParameters,
} from '../finetune-options.js';
import { formatMetrics } from '../metrics.js';
import { peftCheckpointer } from '../peft-checkpointer.js';
import { Trainer } from '../trainer.js';
import { collateCausalLm, type TokenizedExample, tokenizeRecords } from './dataset.js';
import { readJsonlTexts } from './jsonl.js';
import { loadTokenizer } from './tokenizer.js';
import { basename, checkOutputPath, copyFile, join, loadModel, replaceFolder } from '#node-fs';

/** PEFT's example targets Llama's seven projections; GPT-2's Conv1D layers play the same roles. */
export const DEFAULT_TEXT_TARGETS: Readonly<Record<string, readonly string[]>> = {
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  gpt2: ['c_attn', 'c_proj', 'c_fc'],
};

export const TEXT_FINETUNE_DEFAULTS: Omit<ResolvedHyperParameters, 'useDora'> = {
  loraR: 8,
  loraAlpha: 16,
  loraDropout: 0.05,
  batchSize: 1,
  gradAccum: 16,
  maxSteps: 20,
  evalStep: 10,
  lr: 3e-4,
  seed: 42,
};

export interface TextFinetuneOptions extends FinetuneOptions {
  /** A Hugging Face model folder: config.json, model.safetensors (or shards), tokenizer.json. */
  readonly model: string;
  /** JSON lines, one {"text": "…"} per line. */
  readonly data: string;
  /** Tokens per example after truncation (PEFT's --cutoff_len). Default 512. */
  readonly cutoffLen?: number;
  /** Examples held out for eval_loss (the file's last ones). Default: 10%, at most 500, none below 10 records. */
  readonly valSetSize?: number;
  /** Linear warm-up steps. Default: 10% of maxSteps. */
  readonly warmupSteps?: number;
  /**
   * Quantize the base model's Linear layers while loading it (QLoRA with `useDora: false`, QDoRA by
   * default): bitsandbytes' 'nf4', 'fp4' or 'int8', as transformers' BitsAndBytesConfig. `lm_head`,
   * embeddings and norms stay float; the adapter is an ordinary PEFT adapter. Default: no quantization.
   */
  readonly quantize?: 'nf4' | 'fp4' | 'int8';
  /**
   * Gradient checkpointing (transformers' `gradient_checkpointing`; PEFT's `prepare_model_for_kbit_training`
   * turns it on for QLoRA/QDoRA): each decoder layer keeps only its input and runs again in backward —
   * activation memory of one layer instead of all, for one more forward per step. Default false.
   */
  readonly gradientCheckpointing?: boolean;
}

export interface TextFinetuneResult {
  readonly backend: string;
  readonly modelType: string;
  readonly trainExamples: number;
  readonly evalExamples: number;
  readonly skippedRecords: number;
  /** eval_loss before training (null without an eval split). */
  readonly evalLossBefore: number | null;
  readonly evalMetrics: Readonly<Record<string, number>> | null;
  /** train_runtime, train_samples_per_second, train_steps_per_second, train_loss, epoch. */
  readonly metrics: Readonly<Record<string, number>>;
  readonly adapterDir: string | null;
}

function defaultValSetSize(records: number): number {
  return records < 10 ? 0 : Math.min(500, Math.max(1, Math.floor(records / 10)));
}

export async function runTextFinetune(options: TextFinetuneOptions): Promise<TextFinetuneResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const h = resolveHyperParameters(options, TEXT_FINETUNE_DEFAULTS);
  const cutoffLen = options.cutoffLen ?? 512;
  if (!Number.isInteger(cutoffLen) || cutoffLen < 2) throw new ConfigError(`cutoffLen must be an integer ≥ 2, got ${cutoffLen}`);
  if (options.quantize !== undefined && !['nf4', 'fp4', 'int8'].includes(options.quantize)) {
    throw new ConfigError(`quantize must be 'nf4', 'fp4' or 'int8', got '${String(options.quantize)}'`);
  }
  const { backend, reason } = await backendFor(options.backend);

  // Cheap checks first: the output path, the data file and the tokenizer fail before any weight is read.
  if (options.output) {
    await checkOutputPath(options.output, {
      kind: 'folder',
      inputs: [options.model, options.data],
      ...(options.fs ? { fs: options.fs } : {}),
    });
  }
  const records = await readJsonlTexts(options.data);
  const random = new Random(h.seed);
  const { model, checkpoint } = await loadModel(options.model, {
    backend,
    random,
    ...(options.quantize ? { quantize: options.quantize } : {}),
  });
  let peft: Awaited<ReturnType<typeof getPeftModel>> | null = null;
  try {
    const eosConfig = checkpoint.config.json['eos_token_id'];
    const eosFromConfig =
      typeof eosConfig === 'number' ? eosConfig : Array.isArray(eosConfig) && typeof eosConfig[0] === 'number' ? eosConfig[0] : null;
    const tokenizer = await loadTokenizer(options.model, eosFromConfig);
    const { examples, skipped } = tokenizeRecords(records, tokenizer, { cutoffLen, vocabSize: model.vocabSize, file: options.data });
    const valSetSize = Math.min(options.valSetSize ?? defaultValSetSize(examples.length), examples.length - 1);
    const train = examples.slice(0, examples.length - valSetSize);
    const evalSet = examples.slice(examples.length - valSetSize);
    const targets = parseTargetModules(options.targetModules, DEFAULT_TEXT_TARGETS[checkpoint.modelType] ?? []);

    log(`model: ${checkpoint.modelType} from ${options.model}; backend: ${backend.name} (${reason})`);
    const quantized = model.namedModules().filter(([, m]) => m instanceof QuantizedLinear);
    if (quantized.length > 0) {
      const format = (quantized[0]![1] as QuantizedLinear).format;
      log(`quantized base: ${quantized.length} Linear layers in ${format} (lm_head, embeddings and norms stay float)`);
    }
    log(
      `data: ${train.length} train / ${evalSet.length} eval examples from ${basename(options.data)}${skipped ? ` (${skipped} records with < 2 tokens skipped)` : ''}, cutoff ${cutoffLen} tokens`,
    );
    const config = new LoraConfig({
      r: h.loraR,
      loraAlpha: h.loraAlpha,
      loraDropout: h.loraDropout,
      targetModules: targets,
      useDora: h.useDora,
      taskType: 'CAUSAL_LM',
      bias: 'none',
    });
    peft = await getPeftModel(model, config, 'default', { random });
    peft.train();
    log(
      `${h.useDora ? 'DoRA' : 'LoRA'}: r=${h.loraR} alpha=${h.loraAlpha} dropout=${h.loraDropout} on ${describeTargets(targets)}; ${peft.printTrainableParameters(() => {})}`,
    );

    if (options.gradientCheckpointing) log('gradient checkpointing: each decoder layer runs again in backward');
    const pm = peft;
    const trainer = new Trainer<TokenizedExample>({
      model: pm,
      objective: 'causal-lm',
      trainDataset: train,
      ...(evalSet.length ? { evalDataset: evalSet } : {}),
      collate: collateCausalLm(backend, tokenizer.eosId ?? 0),
      checkpointer: peftCheckpointer(pm),
      args: {
        maxSteps: h.maxSteps,
        batchSize: h.batchSize,
        gradAccum: h.gradAccum,
        lr: h.lr,
        evalStep: h.evalStep,
        seed: h.seed,
        weightDecay: 0.01,
        warmupSteps: options.warmupSteps ?? Math.floor(h.maxSteps / 10),
        gradientCheckpointing: options.gradientCheckpointing ?? false,
      },
      callbacks: {
        onStepEnd: (p) => options.onProgress?.({ ...p, method: h.useDora ? 'dora' : 'lora' }),
        onLog: (e) =>
          log(`step ${e.step}: loss ${e.loss?.toFixed(4)}, lr ${e.learning_rate?.toExponential(2)}, grad_norm ${e.grad_norm?.toFixed(3)}`),
        onEvaluate: (m, step) => log(`step ${step}: eval_loss ${m.eval_loss!.toFixed(4)}`),
      },
    });
    try {
      const evalLossBefore = evalSet.length ? (await trainer.evaluate()).eval_loss! : null;
      const out = await trainer.train();
      const evalMetrics = evalSet.length ? await trainer.evaluate() : null;
      log(formatMetrics('train', out.metrics));
      if (evalMetrics) log(formatMetrics('eval', evalMetrics));
      let adapterDir: string | null = null;
      if (options.output) {
        // Adapter and tokenizer files replace the output folder together: never new weights beside old files.
        const fs = options.fs;
        await replaceFolder(
          options.output,
          async (temp) => {
            await pm.savePretrained(temp, fs ? { fs } : {});
            for (const f of tokenizer.files) await (fs ? fs.copyFile(f, join(temp, basename(f))) : copyFile(f, join(temp, basename(f))));
          },
          { ...(fs ? { fs } : {}), ...(options.report ? { report: options.report } : {}) },
        );
        adapterDir = options.output;
        log(`adapter (PEFT format) and tokenizer written to ${adapterDir}`);
      }
      return {
        backend: backend.name,
        modelType: checkpoint.modelType,
        trainExamples: train.length,
        evalExamples: evalSet.length,
        skippedRecords: skipped,
        evalLossBefore,
        evalMetrics,
        metrics: out.metrics,
        adapterDir,
      };
    } finally {
      trainer.dispose();
    }
  } finally {
    (peft ?? model).dispose();
  }
}
