/**
 * What a web app downloads: `@dorajs/peft` with one backend (and core through them), bundled from the built
 * packages with esbuild (--platform=browser, minified) and with Vite, sized minified and minified + gzip
 * (level 9). Goal: ≤ 80 KB gzipped for peft + backend-webgpu and for peft + backend-cpu. The time column is
 * the bundler's wall time.
 */
import { esbuildBundle, viteBundle } from '@dorajs/web-tests';
import type { BenchResult, BenchSuite } from '../harness.js';

const SETS: readonly (readonly string[])[] = [
  ['@dorajs/peft', '@dorajs/backend-webgpu'],
  ['@dorajs/peft', '@dorajs/backend-cpu'],
  ['@dorajs/peft', '@dorajs/models', '@dorajs/backend-webgpu'],
];
const GOAL_KB = 80;

const kb = (bytes: number) => (bytes / 1000).toFixed(1);

const suite: BenchSuite = {
  name: 'bundle-size',
  async run() {
    const rows: BenchResult[] = [];
    for (const set of SETS) {
      for (const [tool, bundle] of [
        ['esbuild', esbuildBundle],
        ['vite', viteBundle],
      ] as const) {
        const start = performance.now();
        const b = await bundle(set);
        const ms = performance.now() - start;
        const withinGoal = set.length === 2 ? ` (goal ≤ ${GOAL_KB} KB: ${b.gzipBytes <= GOAL_KB * 1000 ? 'met' : 'MISSED'})` : '';
        rows.push({
          name: 'bundle',
          backend: tool,
          shape: set.map((p) => p.replace('@dorajs/', '')).join(' + '),
          medianMs: ms,
          threads: 1,
          notes: `${kb(b.bytes)} KB minified, ${kb(b.gzipBytes)} KB gzip${withinGoal}`,
        });
      }
    }
    return rows;
  },
};
export default suite;
