/**
 * The demo page. Query parameters (for quick runs and the browser test): `backend=auto|cpu|webgpu`,
 * `steps=N`, `methods=dora,lora`, `evalStep=N`, `evalLimit=N`, `autorun=1`, `tab=train|apply`. When a
 * training run ends `globalThis.__result` holds what the page shows (the test reads it).
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { defaultCache, type LoadProgress, type SourceInput } from '@dorajs/core';
import { type FinetuneMethod, MNIST_BASE_FILE } from '@dorajs/train';
import uPlot from 'uplot';
import { type AdapterMode, LoadedPair } from './apply.js';
import { type BackendChoice, type PickedBackend, pickBackend } from './backend.js';
import { decodeMnist, fetchBytes } from './mnist.js';
import { DEFAULT_SETTINGS, type RunResult, runTraining, type TrainSettings } from './train.js';

const params = new URLSearchParams(location.search);
const $ = <T extends HTMLElement = HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const COLORS: Record<FinetuneMethod, string> = { dora: '#c2410c', lora: '#1d4ed8' };
const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function intParam(name: string, fallback: number, min: number): number {
  const v = params.get(name);
  if (v === null) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`?${name}=${v}: expected an integer ≥ ${min}`);
  return n;
}

function settingsFromQuery(): TrainSettings {
  const methods = (params.get('methods') ?? 'dora,lora').split(',').filter(Boolean);
  if (methods.length === 0 || methods.some((m) => m !== 'dora' && m !== 'lora'))
    throw new Error(`?methods=${params.get('methods')}: expected dora, lora or both`);
  return {
    methods: methods as FinetuneMethod[],
    maxSteps: intParam('steps', DEFAULT_SETTINGS.maxSteps, 1),
    evalStep: intParam('evalStep', DEFAULT_SETTINGS.evalStep, 0),
    evalLimit: intParam('evalLimit', DEFAULT_SETTINGS.evalLimit, 1),
    probeCount: DEFAULT_SETTINGS.probeCount,
  };
}

// ---- tabs
function showTab(name: string): void {
  for (const b of document.querySelectorAll<HTMLButtonElement>('.tab')) b.classList.toggle('active', b.dataset.tab === name);
  for (const s of document.querySelectorAll<HTMLElement>('.panel')) s.hidden = s.id !== name;
}
for (const b of document.querySelectorAll<HTMLButtonElement>('.tab')) b.addEventListener('click', () => showTab(b.dataset.tab!));
showTab(params.get('tab') === 'apply' ? 'apply' : 'train');

// ---- backend (one for the page)
let picked: Promise<PickedBackend> | null = null;
function backend(): Promise<PickedBackend> {
  picked ??= pickBackend((params.get('backend') ?? 'auto') as BackendChoice).then(
    (p) => {
      $('#backend').textContent = `backend: ${p.summary}`;
      return p;
    },
    (e: unknown) => {
      $('#backend').textContent = `backend: failed — ${(e as Error).message}`;
      throw e;
    },
  );
  return picked;
}

// ---- charts
function chart(target: HTMLElement, yLabel: string, y: uPlot.Scale): uPlot {
  const width = Math.max(280, target.clientWidth || 480);
  return new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: false }, y },
      axes: [{ label: 'step' }, { label: yLabel }],
      series: [
        { label: 'step' },
        { label: 'DoRA', stroke: COLORS.dora, width: 2, spanGaps: true },
        { label: 'LoRA', stroke: COLORS.lora, width: 2, spanGaps: true },
      ],
    },
    [[], [], []],
    target,
  );
}

class Series {
  readonly x: number[] = [];
  readonly y: Record<FinetuneMethod, (number | null)[]> = { dora: [], lora: [] };
  private dirty = false;
  private last = 0;
  constructor(private readonly plot: uPlot) {}
  set(method: FinetuneMethod, step: number, value: number): void {
    let i = this.x.indexOf(step);
    if (i < 0) {
      i = this.x.findIndex((s) => s > step);
      if (i < 0) i = this.x.length;
      this.x.splice(i, 0, step);
      this.y.dora.splice(i, 0, null);
      this.y.lora.splice(i, 0, null);
    }
    this.y[method][i] = value;
    this.dirty = true;
    if (performance.now() - this.last > 150) this.flush();
  }
  flush(): void {
    if (!this.dirty) return;
    this.plot.setData([this.x, this.y.dora, this.y.lora] as uPlot.AlignedData);
    this.dirty = false;
    this.last = performance.now();
  }
}

// ---- Train tab
const log = (line: string) => {
  $('#train-log').textContent += `${line}\n`;
};
const runBox = (method: FinetuneMethod) => $(`.run[data-method='${method}']`);
const field = (method: FinetuneMethod, key: string, text: string) => {
  runBox(method).querySelector<HTMLElement>(`[data-k='${key}']`)!.textContent = text;
};

let adapterZip: Blob | null = null;
$('#download').addEventListener('click', () => {
  if (!adapterZip) return;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(adapterZip);
  a.download = 'dora-mnist-adapter.zip';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
});

async function loadData(): Promise<{ digits: ReturnType<typeof decodeMnist>; base: Uint8Array }> {
  const status = $('#data-status');
  const base = fetchBytes(MNIST_BASE_FILE);
  const bytes = await fetchBytes('./data/mnist-digits.bin', (loaded, total) => {
    status.textContent = `MNIST ${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`;
  });
  const digits = decodeMnist(bytes, './data/mnist-digits.bin');
  status.textContent = `MNIST: ${digits.reduce((n, d) => n + d.length, 0)} images`;
  return { digits, base: await base };
}

async function train(settings: TrainSettings): Promise<void> {
  const start = $<HTMLButtonElement>('#start');
  start.disabled = true;
  $('#download').toggleAttribute('disabled', true);
  adapterZip = null;
  $('#train-log').textContent = '';
  for (const m of ['dora', 'lora'] as const) {
    runBox(m).style.opacity = settings.methods.includes(m) ? '1' : '0.4';
    runBox(m).querySelector('progress')!.value = 0;
    for (const k of ['step', 'loss', 'speed', 'accuracy', 'merged', 'params']) field(m, k, '–');
  }
  $('#loss-chart').replaceChildren();
  $('#accuracy-chart').replaceChildren();
  const loss = new Series(chart($('#loss-chart'), 'loss (log scale)', { distr: 3 }));
  const accuracy = new Series(chart($('#accuracy-chart'), 'accuracy', { range: [0, 1] }));
  try {
    const [{ backend: b, summary, threads, kind }, { digits, base }] = await Promise.all([backend(), loadData()]);
    log(`backend: ${summary}`);
    const t0 = performance.now();
    const out = await runTraining(b, digits, base, settings, {
      log,
      start(method, before, params) {
        field(method, 'params', params.toLocaleString());
        field(method, 'accuracy', `${pct(before)} → …`);
        accuracy.set(method, 0, before);
        log(`${method === 'dora' ? 'DoRA' : 'LoRA'}: r=8, alpha=16 on conv1, conv2, fc1 + head; ${params} trainable parameters`);
      },
      step(method, p) {
        runBox(method).querySelector('progress')!.value = p.step / p.maxSteps;
        field(method, 'step', `${p.step} / ${p.maxSteps}`);
        field(method, 'loss', p.loss.toFixed(4));
        field(method, 'speed', p.stepsPerSecond.toFixed(1));
        loss.set(method, p.step, p.loss);
      },
      evaluated(method, step, acc, evalLoss) {
        accuracy.set(method, step, acc);
        log(`${method === 'dora' ? 'DoRA' : 'LoRA'} step ${step}: eval_loss ${evalLoss.toFixed(4)}, eval_accuracy ${pct(acc)}`);
      },
      finished(method, r: RunResult) {
        loss.flush();
        accuracy.set(method, r.steps, r.accuracy);
        accuracy.flush();
        field(method, 'accuracy', pct(r.accuracy));
        field(
          method,
          'merged',
          `${pct(r.mergedAccuracy)} (${r.mergedAccuracy === r.accuracy ? '= unmerged' : '≠ unmerged'}; ${pct(r.mergedAgreement)} agree)`,
        );
        field(method, 'speed', `${r.stepsPerSecond.toFixed(1)} (${r.trainSeconds.toFixed(1)} s)`);
        log(
          `${method === 'dora' ? 'DoRA' : 'LoRA'}: held-out accuracy ${pct(r.accuracy)}, merged ${pct(r.mergedAccuracy)}, ${r.stepsPerSecond.toFixed(1)} steps/s`,
        );
      },
      adapter(zip) {
        adapterZip = zip;
        $('#download').toggleAttribute('disabled', false);
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    log(`done in ${seconds.toFixed(1)} s`);
    (globalThis as { __result?: unknown }).__result = {
      ok: true,
      backend: kind,
      summary,
      threads,
      isolated: crossOriginIsolated,
      seconds,
      before: out.before,
      runs: out.runs,
    };
  } catch (e) {
    const message = `${(e as Error).name}: ${(e as Error).message}`;
    log(message);
    (globalThis as { __result?: unknown }).__result = { ok: false, error: message };
  } finally {
    start.disabled = false;
  }
}

$<HTMLInputElement>('#steps').value = String(settingsFromQuery().maxSteps);
$('#start').addEventListener('click', () => {
  const steps = Number($<HTMLInputElement>('#steps').value);
  void train({ ...settingsFromQuery(), maxSteps: Number.isInteger(steps) && steps > 0 ? steps : DEFAULT_SETTINGS.maxSteps });
});

// ---- Apply tab
let loaded: LoadedPair | null = null;
const picks: Record<'model' | 'adapter', SourceInput | null> = { model: null, adapter: null };

for (const b of document.querySelectorAll<HTMLButtonElement>('.pick')) {
  const which = b.dataset.for as 'model' | 'adapter';
  const picker = (globalThis as { showDirectoryPicker?: () => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker;
  if (!picker) b.hidden = true;
  b.addEventListener('click', async () => {
    try {
      const handle = await picker!();
      picks[which] = handle as unknown as SourceInput;
      b.textContent = `${handle.name}/`;
    } catch {
      // The user closed the picker.
    }
  });
}
for (const which of ['model', 'adapter'] as const) {
  $<HTMLInputElement>(`#${which}-files`).addEventListener('change', (e) => {
    const files = (e.target as HTMLInputElement).files;
    picks[which] = files?.length ? (files as unknown as SourceInput) : null;
  });
}

function chosen(which: 'model' | 'adapter'): SourceInput | null {
  const url = $<HTMLInputElement>(`#${which}-url`).value.trim();
  if (url)
    return new URL(url, location.href).protocol.startsWith('http') && /^(https?:|\.|\/)/.test(url) ? new URL(url, location.href) : url;
  return picks[which];
}

function memoryLine(b: PickedBackend): string {
  const parts: string[] = [];
  const heap = (performance as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize;
  if (heap !== undefined) parts.push(`JS heap ${mb(heap)}`);
  const m = b.backend.memory?.();
  if (m) parts.push(`${b.kind === 'cpu' ? 'wasm heap' : 'backend'} ${mb(m.usedBytes)} of ${mb(m.limitBytes)}`);
  return parts.join(', ');
}

$('#load').addEventListener('click', async () => {
  const status = $('#load-status');
  const bar = $<HTMLProgressElement>('#load-progress');
  $('#apply-error').textContent = '';
  $<HTMLButtonElement>('#predict').disabled = true;
  try {
    const model = chosen('model');
    if (!model) throw new Error('choose a model folder, or type its URL or Hub id');
    const b = await backend();
    loaded?.dispose();
    loaded = null;
    const cache = $<HTMLInputElement>('#cache').checked ? defaultCache() : null;
    loaded = await LoadedPair.load(
      b.backend,
      model,
      chosen('adapter'),
      (what: string, p: LoadProgress) => {
        bar.value = p.totalBytes ? p.loadedBytes / p.totalBytes : 0;
        status.textContent = `${what}: ${mb(p.loadedBytes)} of ${mb(p.totalBytes)}, ${p.loadedTensors}/${p.totalTensors} tensors`;
      },
      cache,
    );
    bar.value = 1;
    status.textContent = `${loaded.modelName}: model ${loaded.loadMs.model.toFixed(0)} ms${loaded.peft ? `, adapter ${loaded.loadMs.adapter.toFixed(0)} ms` : ''}${loaded.tokenizer ? '' : ' (no tokenizer.json: type token ids)'}`;
    $('#apply-stats').textContent = `${b.summary}; ${memoryLine(b)}`;
    $<HTMLButtonElement>('#predict').disabled = false;
    (globalThis as { __applyLoaded?: unknown }).__applyLoaded = { ok: true, adapter: loaded.peft !== null };
  } catch (e) {
    const message = `${(e as Error).name}: ${(e as Error).message}`;
    $('#apply-error').textContent = message;
    (globalThis as { __applyLoaded?: unknown }).__applyLoaded = { ok: false, error: message };
  }
});

$('#predict').addEventListener('click', async () => {
  if (!loaded) return;
  $('#apply-error').textContent = '';
  const mode = (document.querySelector<HTMLInputElement>('input[name=mode]:checked')?.value ?? 'on') as AdapterMode;
  try {
    const p = await loaded.predict($<HTMLInputElement>('#prompt').value, mode);
    $('#top tbody').replaceChildren(
      ...p.top.map((t) => {
        const row = document.createElement('tr');
        for (const text of [JSON.stringify(t.token), String(t.id), pct(t.probability)]) {
          const cell = document.createElement('td');
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    $('#continuation').textContent = p.continuation;
    const b = await backend();
    $('#apply-stats').textContent =
      `adapter ${mode}: forward ${p.forwardMs.toFixed(0)} ms, ${p.promptIds.length} prompt tokens; 12 greedy tokens ${p.generateMs.toFixed(0)} ms; ${b.summary}; ${memoryLine(b)}`;
    (globalThis as { __applyResult?: unknown }).__applyResult = p;
  } catch (e) {
    const message = `${(e as Error).name}: ${(e as Error).message}`;
    $('#apply-error').textContent = message;
    (globalThis as { __applyResult?: unknown }).__applyResult = { mode, error: message };
  }
});

void backend().catch(() => {});
if (params.get('autorun') === '1') void train(settingsFromQuery());
