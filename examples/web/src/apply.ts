/**
 * The Apply tab's work: a Hugging Face causal LM (a dropped or picked folder, a URL or a Hub id) with a PEFT
 * adapter, run with the adapter on, off or merged into the weights; the next-token distribution for a prompt
 * and a short greedy continuation.
 */
import {
  type Backend,
  type DownloadCache,
  type LoadProgress,
  noGrad,
  readSourceText,
  resolveSource,
  type SourceInput,
  tensor,
  tidy,
} from '@dorajs/core';
import { type CausalLM, generate, loadModel, TextTokenizer } from '@dorajs/models';
import { PeftModel } from '@dorajs/peft';

export type AdapterMode = 'on' | 'off' | 'merged';

export interface TopToken {
  readonly id: number;
  readonly token: string;
  readonly probability: number;
}

export interface Prediction {
  readonly mode: AdapterMode;
  readonly promptIds: readonly number[];
  readonly top: readonly TopToken[];
  /** The last position's logits. */
  readonly logits: readonly number[];
  readonly continuation: string;
  readonly forwardMs: number;
  readonly generateMs: number;
}

const TOKENIZER_LIMIT = 64 * 1024 * 1024;

export class LoadedPair {
  private merged = false;

  private constructor(
    readonly model: CausalLM,
    readonly peft: PeftModel<CausalLM> | null,
    readonly tokenizer: TextTokenizer | null,
    readonly loadMs: { readonly model: number; readonly adapter: number },
    readonly modelName: string,
  ) {}

  static async load(
    backend: Backend,
    modelInput: SourceInput,
    adapterInput: SourceInput | null,
    onProgress: (what: string, p: LoadProgress) => void,
    cache: DownloadCache | null = null,
  ): Promise<LoadedPair> {
    const t0 = performance.now();
    const source = await resolveSource(modelInput, { cache });
    const { model } = await loadModel(source, { backend, onProgress: (p) => onProgress('model', p) });
    let tokenizer: TextTokenizer | null = null;
    try {
      const text = await readSourceText(source, 'tokenizer.json', TOKENIZER_LIMIT);
      if (text !== null) {
        const config = await readSourceText(source, 'tokenizer_config.json', TOKENIZER_LIMIT);
        tokenizer = new TextTokenizer({
          tokenizer: JSON.parse(text),
          config: config === null ? {} : JSON.parse(config),
          source: source.describe('tokenizer.json'),
        });
      }
    } catch (e) {
      model.dispose();
      throw e;
    }
    const t1 = performance.now();
    let peft: PeftModel<CausalLM> | null = null;
    if (adapterInput !== null) {
      try {
        peft = await PeftModel.fromPretrained(model, adapterInput, { cache });
      } catch (e) {
        model.dispose();
        throw e;
      }
    }
    return new LoadedPair(model, peft, tokenizer, { model: t1 - t0, adapter: performance.now() - t1 }, source.name);
  }

  /** Token ids of the prompt: the tokenizer's, or (a folder without tokenizer.json) the numbers typed. */
  encode(prompt: string): number[] {
    if (this.tokenizer) return this.tokenizer.encode(prompt);
    const ids = prompt
      .split(/[\s,]+/)
      .filter(Boolean)
      .map(Number);
    if (ids.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0))
      throw new Error('this model folder has no tokenizer.json: type the prompt as token ids ("1 5 9 3")');
    return ids;
  }

  tokenText(id: number): string {
    return this.tokenizer ? this.tokenizer.decode([id]) : `#${id}`;
  }

  private async setMerged(merged: boolean): Promise<void> {
    if (!this.peft || merged === this.merged) return;
    if (merged) await this.peft.mergeAdapter();
    else await this.peft.unmergeAdapter();
    this.merged = merged;
  }

  async predict(prompt: string, mode: AdapterMode, topK = 10, newTokens = 12): Promise<Prediction> {
    if (!this.peft && mode !== 'off') throw new Error('no adapter is loaded: only "off" applies');
    const ids = this.encode(prompt);
    await this.setMerged(mode === 'merged');
    const t0 = performance.now();
    const run = () =>
      tidy(() => noGrad(() => (this.peft ?? this.model).forward(tensor(new Int32Array(ids), [1, ids.length], { dtype: 'int32' }))));
    const out = mode === 'off' && this.peft ? this.peft.disableAdapter(run) : run();
    const all = (await out.data()) as Float32Array;
    out.dispose();
    const vocab = all.length / ids.length;
    const logits = Array.from(all.subarray(all.length - vocab));
    const forwardMs = performance.now() - t0;
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    const top = logits
      .map((v, id) => ({ id, v }))
      .sort((a, b) => b.v - a.v)
      .slice(0, topK)
      .map(({ id, v }) => ({ id, token: this.tokenText(id), probability: Math.exp(v - max) / sum }));
    const t1 = performance.now();
    const generated = await generate(this.peft ?? this.model, [ids], {
      maxNewTokens: newTokens,
      doSample: false,
      ...(mode === 'off' && this.peft ? { adapterNames: ['__base__'] } : {}),
    });
    const fresh = generated.newTokens[0] ?? [];
    const continuation = this.tokenizer ? this.tokenizer.decode(fresh) : fresh.map((id) => `#${id}`).join(' ');
    return { mode, promptIds: ids, top, logits, continuation, forwardMs, generateMs: performance.now() - t1 };
  }

  dispose(): void {
    this.model.dispose();
  }
}
