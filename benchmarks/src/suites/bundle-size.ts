/**
 * What a web app downloads: `@dorajs/peft` with one backend (and core through them), bundled from the built
 * packages with esbuild (--platform=browser, minified) and with Vite (an app build of the entry module, not
 * library mode, whose ES output keeps whitespace for the app's own bundler: see tests/web/src/bundle.ts),
 * sized minified and minified + gzip (level 9). An app build splits code: the page loads the entry and its static imports (`initial`); the RE2
 * engine that runs regular expressions from adapter configs is a lazy chunk, fetched only the first time a
 * config has one. Goal: ≤ 80 KB gzipped initial download for peft + backend-webgpu and for peft + backend-cpu.
backend-cpu is measured through the entry its README recommends for pages, `await loadCpuBackend()`, whose
wasm kernel emitter is a lazy chunk fetched when the backend is created (the goal row); the synchronous
`createCpuBackend` entry, which puts the emitter in the initial download, has its own row (informational).
 * The single-file rows (every dynamic import inlined, as a library bundle without code splitting does) show
 * the worst case. The time column is the bundler's wall time.
 */
import { type EntryPart, esbuildBundle, esbuildChunks, splitSizes, viteBundle, viteChunks } from '@dorajs/web-tests';
import type { BenchResult, BenchSuite } from '../harness.js';

interface BundleSet {
  readonly shape: string;
  readonly entry: readonly EntryPart[];
  /** Measured against GOAL_KB. */
  readonly goal: boolean;
  /** What the lazy chunks are. */
  readonly lazy: string;
}

const RE2 = 'RE2, only for configs with patterns';
const SETS: readonly BundleSet[] = [
  { shape: 'peft + backend-webgpu', entry: ['@dorajs/peft', '@dorajs/backend-webgpu'], goal: true, lazy: RE2 },
  {
    shape: 'peft + backend-cpu (await loadCpuBackend)',
    entry: ['@dorajs/peft', { from: '@dorajs/backend-cpu', names: ['loadCpuBackend'] }],
    goal: true,
    lazy: `${RE2}; the cpu kernel emitter, fetched by loadCpuBackend()`,
  },
  {
    shape: 'peft + backend-cpu (createCpuBackend, sync)',
    entry: ['@dorajs/peft', { from: '@dorajs/backend-cpu', names: ['createCpuBackend'] }],
    goal: false,
    lazy: RE2,
  },
  { shape: 'peft + models + backend-webgpu', entry: ['@dorajs/peft', '@dorajs/models', '@dorajs/backend-webgpu'], goal: false, lazy: RE2 },
];
const GOAL_KB = 80;

const kb = (bytes: number) => (bytes / 1000).toFixed(1);

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

const suite: BenchSuite = {
  name: 'bundle-size',
  async run() {
    const rows: BenchResult[] = [];
    for (const { shape, entry, goal, lazy: lazyWhat } of SETS) {
      for (const [tool, chunks, single] of [
        ['esbuild', esbuildChunks, esbuildBundle],
        ['vite', viteChunks, viteBundle],
      ] as const) {
        const split = await timed(async () => splitSizes(await chunks(entry)));
        const { initial, lazy } = split.value;
        const withinGoal = goal ? ` (goal ≤ ${GOAL_KB} KB: ${initial.gzipBytes <= GOAL_KB * 1000 ? 'met' : 'MISSED'})` : '';
        rows.push({
          name: 'bundle, code-split (initial download)',
          backend: tool,
          shape,
          medianMs: split.ms,
          threads: 1,
          notes:
            `${kb(initial.bytes)} KB minified, ${kb(initial.gzipBytes)} KB gzip${withinGoal}; ` +
            `lazy: ${lazy.chunks} chunk(s), ${kb(lazy.gzipBytes)} KB gzip (${lazyWhat})`,
        });
        const whole = await timed(() => single(entry));
        rows.push({
          name: 'bundle, single file (dynamic imports inlined)',
          backend: tool,
          shape,
          medianMs: whole.ms,
          threads: 1,
          notes: `${kb(whole.value.bytes)} KB minified, ${kb(whole.value.gzipBytes)} KB gzip`,
        });
      }
    }
    return rows;
  },
};
export default suite;
