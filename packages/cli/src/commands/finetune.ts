/**
 * `dora finetune`: PEFT's dora_finetuning.py example as a command. With no --model/--data it runs the
 * built-in job (a CNN pretrained on MNIST digits 0–4, DoRA-fine-tuned on 5–9); with --model and --data
 * it fine-tunes a Hugging Face causal LM on a JSONL text file.
 */
import type { CommandSpec } from '../args.js';
import { numberFlag } from '../args.js';
import { selectBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import type { Command } from '../main.js';
import { progressBar } from '../progress.js';

const spec: CommandSpec = {
  name: 'finetune',
  summary: 'Fine-tune a DoRA (default) or LoRA adapter and save it in the PEFT format.',
  flags: {
    model: { type: 'string', description: 'Hugging Face model folder (default: the built-in MNIST CNN)', placeholder: 'DIR' },
    data: { type: 'string', description: 'JSONL text file ({"text": …} per line), or \'mnist\' (built-in)', placeholder: 'FILE' },
    output: { type: 'string', description: 'folder for the adapter (adapter_config.json + adapter_model.safetensors)', placeholder: 'DIR' },
    'use-dora': { type: 'boolean', description: 'train DoRA (the default)' },
    'no-dora': { type: 'boolean', description: 'train plain LoRA' },
    'lora-r': { type: 'string', description: 'LoRA rank', placeholder: 'N' },
    'lora-alpha': { type: 'string', description: 'LoRA alpha', placeholder: 'N' },
    'lora-dropout': { type: 'string', description: 'dropout on the adapter input', placeholder: 'P' },
    'target-modules': { type: 'string', description: "comma-separated module names, or 'all-linear'", placeholder: 'LIST' },
    'batch-size': { type: 'string', description: 'samples per micro-batch', placeholder: 'N' },
    'grad-accum': { type: 'string', description: 'micro-batches per optimizer step', placeholder: 'N' },
    'max-steps': { type: 'string', description: 'optimizer steps', placeholder: 'N' },
    'eval-step': { type: 'string', description: 'evaluate every N steps (0: only before and after training)', placeholder: 'N' },
    lr: { type: 'string', description: 'learning rate', placeholder: 'LR' },
    seed: { type: 'string', description: 'random seed', placeholder: 'N' },
    quantize: {
      type: 'string',
      description:
        "quantize the base model's Linear layers (QLoRA / QDoRA): nf4, fp4 or int8; add --gradient-checkpointing as PEFT's prepare_model_for_kbit_training does",
      placeholder: 'TYPE',
    },
    'gradient-checkpointing': {
      type: 'boolean',
      description: 'recompute each decoder layer in backward: activation memory of one layer instead of all, one more forward per step',
    },
  },
  examples: [
    'dora finetune',
    'dora finetune --max-steps 2 --output /tmp/adapter',
    'dora finetune --model ./tiny-llama --data train.jsonl --output ./out',
    'dora finetune --model ./tiny-llama --data train.jsonl --quantize nf4 --gradient-checkpointing --output ./out',
  ],
};

export const finetuneCommand: Command = {
  spec,
  async run({ flags, log, out, fs, report }) {
    if (flags['use-dora'] && flags['no-dora']) throw new UsageError('--use-dora and --no-dora contradict each other');
    const model = flags.model as string | undefined;
    const data = flags.data as string | undefined;
    const builtin = model === undefined && (data === undefined || data === 'mnist');
    if (!builtin && (model === undefined || data === undefined)) {
      throw new UsageError('--model and --data go together (give both, or neither for the built-in MNIST job)');
    }
    const quantize = flags.quantize as string | undefined;
    if (quantize !== undefined && !QUANTIZE_TYPES.includes(quantize)) {
      throw new UsageError(`--quantize: '${quantize}' is not one of ${QUANTIZE_TYPES.join(', ')}`);
    }
    if (quantize !== undefined && builtin)
      throw new UsageError('--quantize needs --model and --data (the built-in MNIST CNN is not quantized)');
    const gradientCheckpointing = flags['gradient-checkpointing'] === true;
    if (gradientCheckpointing && builtin)
      throw new UsageError('--gradient-checkpointing needs --model and --data (the built-in MNIST CNN has no decoder layers)');
    const options = {
      useDora: !flags['no-dora'],
      loraR: numberFlag(flags, 'lora-r', { integer: true, min: 1 }),
      loraAlpha: numberFlag(flags, 'lora-alpha', { min: 0 }),
      loraDropout: numberFlag(flags, 'lora-dropout', { min: 0 }),
      targetModules: typeof flags['target-modules'] === 'string' ? parseTargets(flags['target-modules']) : undefined,
      batchSize: numberFlag(flags, 'batch-size', { integer: true, min: 1 }),
      gradAccum: numberFlag(flags, 'grad-accum', { integer: true, min: 1 }),
      maxSteps: numberFlag(flags, 'max-steps', { integer: true, min: 1 }),
      evalStep: numberFlag(flags, 'eval-step', { integer: true, min: 0 }),
      lr: numberFlag(flags, 'lr', { min: 0 }),
      seed: numberFlag(flags, 'seed', { integer: true, min: 0 }),
      output: flags.output as string | undefined,
      fs,
      report,
    };
    const backend = await selectBackend(flags.backend, log);
    const train = await import('@dorajs/train');
    const { loadMnistDigits } = await import('../mnist-data.js');
    const bar = progressBar(log, out);
    const onProgress = bar.update;
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    const summary = builtin
      ? await train.runMnistFinetune({ ...defined, data: await loadMnistDigits(), backend, onProgress, log: bar.line })
      : await train.runTextFinetune({
          ...defined,
          model: model!,
          data: data!,
          backend,
          onProgress,
          log: bar.line,
          ...(quantize ? { quantize: quantize as 'nf4' | 'fp4' | 'int8' } : {}),
          ...(gradientCheckpointing ? { gradientCheckpointing } : {}),
        });
    out(`${train.formatSummary(summary)}\n`);
    backend.dispose();
  },
};

const QUANTIZE_TYPES = ['nf4', 'fp4', 'int8'];

function parseTargets(v: string): string[] | 'all-linear' {
  if (v === 'all-linear') return v;
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0) throw new UsageError(`--target-modules: no module names in '${v}'`);
  return list;
}
