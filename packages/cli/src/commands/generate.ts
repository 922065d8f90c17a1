/**
 * `dora generate`: text from a Hugging Face causal LM (optionally with a PEFT adapter, optionally merged),
 * printed as it is generated; greedy unless --temperature / --top-p ask for sampling. Prompt and decode
 * tokens per second go to stderr at the end.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { DoraError } from '@dorajs/core';
import {
  type CausalLM,
  checkPromptFits,
  generate,
  type GenerateOptions,
  type GenerationConfig,
  maxPositionsOf,
  modelSkeleton,
  TextStreamer,
} from '@dorajs/models';
import { CONFIG_FILE, checkAdapter, loadGenerationConfig, loadModel, loadTokenizer } from '@dorajs/models/node';
import { DoraCaching, PeftModel } from '@dorajs/peft';
import type { CommandSpec } from '../args.js';
import { selectBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import type { Command } from '../main.js';

const spec: CommandSpec = {
  name: 'generate',
  summary: 'Generate text with a model (and a PEFT adapter), printing it as it comes.',
  flags: {
    model: { type: 'string', description: 'Hugging Face model folder with tokenizer.json', required: true, placeholder: 'DIR' },
    adapter: { type: 'string', description: 'PEFT adapter folder', placeholder: 'DIR' },
    merge: { type: 'boolean', description: 'merge the adapter into the weights first' },
    prompt: { type: 'string', description: 'the prompt text (tokenized with the BOS the tokenizer adds)', placeholder: 'TEXT' },
    chat: { type: 'boolean', description: 'read user messages from stdin, one per line, through the chat template' },
    'max-new-tokens': {
      type: 'string',
      description: 'tokens to generate (default: generation_config.json, else 20 in all)',
      placeholder: 'N',
    },
    temperature: { type: 'string', description: 'sample with this temperature (default: greedy)', placeholder: 'T' },
    'top-p': { type: 'string', description: 'sample from the top-p nucleus', placeholder: 'P' },
    seed: { type: 'string', description: 'sampling seed (default 0)', placeholder: 'N' },
  },
  examples: [
    'dora generate --model ./llama --prompt "Once upon a time" --max-new-tokens 40',
    'dora generate --model ./llama --adapter ./dora-adapter --chat --temperature 0.7 --top-p 0.9 --seed 1',
  ],
};

function number(flags: Record<string, unknown>, name: string, integer: boolean): number | undefined {
  const raw = flags[name];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got '${String(raw)}'`);
  }
  return v;
}

export const generateCommand: Command = {
  spec,
  async run({ flags, log, out }) {
    if ((typeof flags.prompt === 'string') === (flags.chat === true)) throw new UsageError('give exactly one of --prompt TEXT and --chat');
    if (flags.merge && typeof flags.adapter !== 'string') throw new UsageError('--merge needs --adapter');
    const options: GenerationConfig = {
      maxNewTokens: number(flags, 'max-new-tokens', true),
      temperature: number(flags, 'temperature', false),
      topP: number(flags, 'top-p', false),
      seed: number(flags, 'seed', true),
    };
    const sampling = options.temperature !== undefined || options.topP !== undefined;
    const dir = flags.model as string;
    // Everything that can be refused is read and checked before the weights are loaded.
    const tokenizer = await loadTokenizer(dir);
    const generationConfig = await loadGenerationConfig(dir);
    // A chat template that cannot render, or a tokenizer for another vocabulary, fails here, before any weight is read.
    if (flags.chat) tokenizer.applyChatTemplate([{ role: 'user', content: 'hello' }]);
    const configPath = join(dir, CONFIG_FILE);
    const configJson = JSON.parse(await readFile(configPath, 'utf8').catch(() => '{}')) as Record<string, unknown>;
    const configVocab = configJson['vocab_size'];
    if (typeof configVocab === 'number') tokenizer.checkVocabulary(configVocab, configPath);
    // A prompt the model cannot hold, too (the config is checked again, with the weights, by loadModel).
    const promptIds = typeof flags.prompt === 'string' ? tokenizer.encode(flags.prompt) : null;
    if (promptIds && typeof configJson['model_type'] === 'string') {
      checkPromptFits(promptIds.length, maxPositionsOf(configJson as Parameters<typeof maxPositionsOf>[0], configPath));
    }
    // An adapter folder made for another architecture or size is refused before anything is loaded, against
    // the module tree config.json describes (PEFT would attach the modules whose names match and only warn).
    const adapterDir = typeof flags.adapter === 'string' ? flags.adapter : null;
    const localAdapter =
      adapterDir !== null &&
      (await stat(adapterDir).then(
        (s) => s.isDirectory(),
        () => false,
      ));
    let adapterChecked = false;
    if (localAdapter && typeof configJson['model_type'] === 'string') {
      let skeleton: CausalLM | null = null;
      try {
        skeleton = modelSkeleton(configJson as Parameters<typeof modelSkeleton>[0], configPath);
      } catch (error) {
        // Sizes no array can hold: loadModel refuses them against the checkpoint, with the right error.
        if (error instanceof DoraError) throw error;
      }
      if (skeleton) {
        try {
          await checkAdapter(skeleton, adapterDir!);
          adapterChecked = true;
        } finally {
          skeleton.dispose();
        }
      }
    }
    const backend = await selectBackend(flags.backend, log);
    const { model: base } = await loadModel(dir, { backend });
    try {
      tokenizer.checkVocabulary(base.vocabSize, join(dir, CONFIG_FILE));
      let model: Parameters<typeof generate>[0] = base;
      if (typeof flags.adapter === 'string') {
        if (localAdapter && !adapterChecked) await checkAdapter(base, flags.adapter);
        const peft = await PeftModel.fromPretrained(base, flags.adapter);
        model = flags.merge ? await peft.mergeAndUnload() : peft;
      }
      const eos = generationConfig.eosTokenId ?? tokenizer.eosTokenId ?? undefined;
      const settings: GenerateOptions = {
        generationConfig: { ...generationConfig, eosTokenId: eos, ...(sampling ? { doSample: true, topK: 0 } : {}) },
        ...options,
      };
      const turn = async (ids: number[]): Promise<string> => {
        let text = '';
        const streamer = new TextStreamer(tokenizer, (piece) => {
          text += piece;
          out(piece);
        });
        // DoRA's per-feature scales are computed once and reused by every step.
        const result = await DoraCaching.scope(() => generate(model, [ids], { ...settings, streamer }));
        out('\n');
        const prefill = result.promptTokens / (result.prefillMs / 1000);
        const decode = result.decodeSteps / (result.decodeMs / 1000);
        log(
          `dora: prompt ${result.promptTokens} tokens, ${prefill.toFixed(1)} tokens/s; decode ${result.decodeSteps} tokens, ${decode.toFixed(1)} tokens/s\n`,
        );
        return text;
      };
      if (promptIds) {
        await turn(promptIds);
        return;
      }
      const messages: { role: string; content: string }[] = [];
      const lines = createInterface({ input: process.stdin, terminal: false });
      for await (const line of lines) {
        if (!line.trim()) continue;
        messages.push({ role: 'user', content: line });
        const reply = await turn(tokenizer.encodeChat(messages));
        messages.push({ role: 'assistant', content: reply });
      }
    } finally {
      base.dispose();
      backend.dispose();
    }
  },
};
